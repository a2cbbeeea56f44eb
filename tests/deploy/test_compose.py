"""docker-compose.yaml, Dockerfile and .env.example: valid, wired as documented, no secret inside.

Everything here runs offline. The file is checked against the Compose Specification's schema and
by `docker-compose config` from Debian's docker-compose package (both need no Docker engine; .ci/run
installs the package). Without the package those checks are skipped, unless REQUIRE_NATIVE_SERVICES
is set, as in CI, where they fail instead.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from patternflow.engine.config import DetectionConfig
from patternflow.pipeline.settings import ENVIRONMENT_PREFIX, PipelineSettings
from tests.deploy.compose import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    PROJECT,
    SCHEMA_FILES,
    InterpolationError,
    interpolate,
    load,
    read_env_file,
    references,
    strings,
)

# The long-running Airflow components, and every service built on the common anchor.
COMPONENTS = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker")
AIRFLOW_SERVICES = (*COMPONENTS, "airflow-init", "airflow-cli", "flower")
ANCHOR = "x-airflow-common"
# Environment a service may add to the common one, and why.
EXTRA_ENVIRONMENT = {
    "airflow-worker": {"DUMB_INIT_SETSID"},  # Celery warm shutdown
    "airflow-init": {"_AIRFLOW_DB_MIGRATE", "_AIRFLOW_ADMIN_PASSWORD"},
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|(^|_)KEY($|_)", re.IGNORECASE)


@pytest.fixture(scope="module")
def raw() -> dict:
    return load()


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


def make_compose_env(env_file: Path) -> subprocess.CompletedProcess:
    """``make compose-env``, as a user runs it, writing ``env_file`` instead of the project's .env."""
    command = ["make", "--no-print-directory", "compose-env", f"ENV_FILE={env_file}"]
    return subprocess.run(command, cwd=PROJECT, capture_output=True, text=True)


@pytest.fixture(scope="module")
def generated_env_file(tmp_path_factory) -> Path:
    """The .env that ``make compose-env`` writes: .env.example with fresh secrets."""
    env_file = tmp_path_factory.mktemp("compose-env") / ".env"
    result = make_compose_env(env_file)
    assert result.returncode == 0, result.stderr
    return env_file


@pytest.fixture(scope="module")
def filled_env(generated_env_file) -> dict[str, str]:
    """A user's .env, as ``make compose-env`` writes it."""
    return read_env_file(generated_env_file)


@pytest.fixture(scope="module")
def compose(raw, filled_env) -> dict:
    """The compose file as Compose sees it with a filled-in .env: merged and interpolated."""
    return interpolate(raw, filled_env)


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environments are written as mappings"
    return env


# --------------------------------------------------------------------------- the specification


def missing(what: str) -> None:
    """Skip for want of ``what``; in CI (REQUIRE_NATIVE_SERVICES set) fail instead."""
    message = f"{what} is not installed (Debian: apt-get install docker-compose)"
    if os.environ.get("REQUIRE_NATIVE_SERVICES"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def schema() -> dict:
    if not SCHEMA_FILES:
        missing("the Compose Specification schema of Debian's docker-compose package")
    return json.loads(SCHEMA_FILES[0].read_text())


def test_valid_against_the_compose_specification(raw, compose, schema):
    validator = jsonschema.Draft7Validator(schema)
    for document, what in ((raw, "as written"), (compose, "interpolated")):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        assert not errors, f"{what}: " + "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])


def test_the_schema_rejects_a_broken_file(raw, schema):
    """The check has teeth: an unknown service key and a bad depends_on condition are refused."""
    validator = jsonschema.Draft7Validator(schema)
    broken = json.loads(json.dumps(raw))
    broken["services"]["redis"]["helthcheck"] = {}
    broken["services"]["airflow-scheduler"]["depends_on"]["postgres"]["condition"] = "service_ready"
    assert len(list(validator.iter_errors(broken))) >= 2


def compose_references(raw: dict) -> list:
    return [ref for value in strings(raw) for ref in references(value)]


def test_every_variable_without_a_default_is_in_env_example(raw, example_env):
    refs = compose_references(raw)
    assert refs, "the compose file takes its settings from the environment"
    undefined = sorted({r.name for r in refs if not r.has_default} - set(example_env))
    assert not undefined, f"used in docker-compose.yaml without a default but not in .env.example: {undefined}"
    unused = sorted(set(example_env) - {r.name for r in refs})
    assert not unused, f".env.example has variables docker-compose.yaml never uses: {unused}"


def test_a_fresh_copy_of_env_example_is_refused_until_the_secrets_are_filled_in(raw, example_env):
    required = {r.name for r in compose_references(raw) if r.required}
    assert required >= {"POSTGRES_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "AIRFLOW_FERNET_KEY", "AIRFLOW_ADMIN_PASSWORD"}
    empty = {name for name, value in example_env.items() if not value}
    assert empty, ".env.example leaves the secrets empty"
    with pytest.raises(InterpolationError, match="required variable"):
        interpolate(raw, example_env)


def test_make_compose_env_fills_every_secret_afresh_and_keeps_the_rest(generated_env_file, example_env, tmp_path):
    filled = read_env_file(generated_env_file)
    secrets_made = {name for name, value in example_env.items() if not value}
    assert set(filled) == set(example_env)
    assert {name: filled[name] for name in example_env if name not in secrets_made} == {
        name: value for name, value in example_env.items() if name not in secrets_made
    }
    for name in secrets_made:
        assert re.fullmatch(r"[A-Za-z0-9_=-]{32,}", filled[name]), name  # safe in a database URL and in JSON
    assert len(base64.urlsafe_b64decode(filled["AIRFLOW_FERNET_KEY"])) == 32  # a Fernet key
    assert len({filled[name] for name in secrets_made}) == len(secrets_made)
    assert generated_env_file.stat().st_mode & 0o077 == 0, "the secrets are readable by their owner only"
    assert generated_env_file.read_text().count("#") == ENV_EXAMPLE.read_text().count("#"), "the comments are kept"

    again = tmp_path / ".env"
    assert make_compose_env(again).returncode == 0
    assert all(read_env_file(again)[name] != filled[name] for name in secrets_made), "every run generates new secrets"


def test_make_compose_env_never_overwrites_an_existing_env(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("POSTGRES_PASSWORD=kept\n")
    result = make_compose_env(env_file)
    assert result.returncode != 0
    assert f"{env_file} exists already" in result.stderr
    assert env_file.read_text() == "POSTGRES_PASSWORD=kept\n"


def test_docker_compose_config_accepts_the_file(tmp_path, generated_env_file):
    """The real parser: `docker-compose config` validates and interpolates without an engine."""
    command = shutil.which("docker-compose")
    if not command:
        missing("docker-compose")
    env_file = generated_env_file
    result = subprocess.run(
        [
            command,
            "--project-directory",
            str(PROJECT),
            "--env-file",
            str(env_file),
            "-f",
            str(PROJECT / "docker-compose.yaml"),
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text((PROJECT / "docker-compose.yaml").read_text().replace("healthcheck:", "healthchek:", 1))
    refused = subprocess.run([command, "--env-file", str(env_file), "-f", str(broken), "config", "--quiet"], capture_output=True, text=True)
    assert refused.returncode != 0 and "healthchek" in refused.stderr


# --------------------------------------------------------------------------- the Airflow services


def test_every_airflow_service_is_built_on_the_common_anchor(raw):
    """In the YAML itself (not only after merging): each service merges `<<: *airflow-common`."""
    root = yaml.compose(COMPOSE_FILE.read_text())
    top = {key.value: value for key, value in root.value}
    anchor = top[ANCHOR]
    service_nodes = {key.value: value for key, value in top["services"].value}
    for name in AIRFLOW_SERVICES:
        merges = [value for key, value in service_nodes[name].value if key.tag == "tag:yaml.org,2002:merge"]
        assert anchor in merges, f"{name} does not merge <<: *airflow-common"


def test_every_airflow_service_shares_image_environment_volumes_and_user(raw, services):
    common = raw[ANCHOR]
    assert common["build"] == "." and (PROJECT / "Dockerfile").is_file()
    assert {"./dags", "./plugins", "./data", "./logs"} <= {v.split(":")[0] for v in common["volumes"]}
    assert common["user"] == "${AIRFLOW_UID:-50000}:0"
    for name in AIRFLOW_SERVICES:
        service = raw["services"][name]
        assert (service["build"], service["image"], service["volumes"]) == (common["build"], common["image"], common["volumes"]), name
        env = environment(service)
        missing = {k for k, v in common["environment"].items() if env.get(k) != v}
        assert not missing, f"{name} changes the common environment: {sorted(missing)}"
        extra = set(env) - set(common["environment"])
        assert extra <= EXTRA_ENVIRONMENT.get(name, set()), f"{name} adds {sorted(extra)}"
    # Only the one-shot init runs as root (it prepares the mounted folders); everything else as the common user.
    assert {n for n in AIRFLOW_SERVICES if raw["services"][n]["user"] != common["user"]} == {"airflow-init"}


def test_commands(services):
    expected = {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
        "airflow-worker": "celery worker",
    }
    assert {name: services[name]["command"] for name in expected} == expected
    init = services["airflow-init"]
    assert init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    script = "\n".join(init["command"])
    assert "/entrypoint airflow version" in script  # the image's entrypoint migrates the database
    assert "passwords.json" in script and "patternflow generate" in script
    for name in ("airflow-cli", "flower"):
        assert services[name].get("profiles"), f"{name} is opt-in (a profile), not started by `docker compose up`"


def test_celery_executor_with_redis_broker_and_postgres_database(services):
    env = environment(services["airflow-scheduler"])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
    assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)
    assert "redis" in services and services["redis"]["image"].startswith("redis")
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:16"
    pg_env = environment(postgres)
    for key, scheme in (
        ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2"),
        ("AIRFLOW__CELERY__RESULT_BACKEND", "db+postgresql"),
    ):
        url = urlsplit(env[key])
        assert (url.scheme, url.hostname, url.path.lstrip("/")) == (scheme, "postgres", pg_env["POSTGRES_DB"]), key
        assert (url.username, url.password) == (pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"]), key
    execution_api = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert (execution_api.hostname, execution_api.port, execution_api.path) == ("airflow-apiserver", 8080, "/execution/")
    assert any(str(p).endswith(":8080") for p in services["airflow-apiserver"]["ports"])
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
    assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] in ("true", "false")


def test_postgres_keeps_its_data_in_a_named_volume(raw):
    for name, path in (("postgres", "/var/lib/postgresql/data"), ("minio", "/data")):
        volume, _, target = raw["services"][name]["volumes"][0].partition(":")
        assert target == path and volume in raw["volumes"], name


def test_health_checks(services):
    for name in ("airflow-apiserver", "postgres", "redis", "minio", "airflow-scheduler", "airflow-worker", "airflow-triggerer"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    api = " ".join(services["airflow-apiserver"]["healthcheck"]["test"])
    assert "/api/v2/version" in api or "/api/v2/monitor/health" in api
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert "ping" in services["redis"]["healthcheck"]["test"]
    assert environment(services["airflow-scheduler"])["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"


def test_airflow_components_wait_for_what_they_need(services):
    for name in (*COMPONENTS, "flower"):
        depends = services[name]["depends_on"]
        for needed in ("postgres", "redis", "minio"):
            assert depends[needed]["condition"] == "service_healthy", f"{name} -> {needed}"
        for one_shot in ("airflow-init", "minio-init"):
            assert depends[one_shot]["condition"] == "service_completed_successfully", f"{name} -> {one_shot}"
    # The workers' task processes report to the execution API: they start once it answers.
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"]["condition"] == "service_healthy"
    assert services["airflow-init"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_dependencies_are_consistent_and_acyclic(services):
    for name, service in services.items():
        for target, spec in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            if spec["condition"] == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} waits for {target} to be healthy, but it has no health check"
            if spec["condition"] == "service_completed_successfully":
                assert "restart" not in services[target], f"{target} is one-shot; a restart policy would keep it running"
    order, visiting = [], set()

    def visit(name: str) -> None:
        if name in order:
            return
        assert name not in visiting, f"dependency cycle through {name}"
        visiting.add(name)
        for target in services[name].get("depends_on", {}):
            visit(target)
        order.append(name)

    for name in services:
        visit(name)
    # The bucket exists before any Airflow component starts.
    for name in COMPONENTS:
        assert order.index("minio-init") < order.index(name)


def test_the_bucket_is_created_before_the_dags_need_it(services):
    init = services["minio-init"]
    assert init["image"].startswith("minio/mc")
    assert init["depends_on"] == {"minio": {"condition": "service_healthy"}}
    script = "\n".join(init["command"]) if isinstance(init["command"], list) else init["command"]
    assert re.search(r"mc alias set \w+ http://minio:9000", script)
    assert re.search(r"mc mb --ignore-existing \"\w+/\$\{PATTERNFLOW_BUCKET\}\"", script)
    # The bucket it creates is the one the DAGs use, and its credentials are MinIO's.
    airflow_env = environment(services["airflow-scheduler"])
    assert environment(init)["PATTERNFLOW_BUCKET"] == airflow_env["PATTERNFLOW_BUCKET"] == "patternflow"
    minio_env = environment(services["minio"])
    assert {k: environment(init)[k] for k in minio_env} == minio_env


def test_the_s3_connection_points_at_minio_with_minios_credentials(services):
    env = environment(services["airflow-worker"])
    settings = PipelineSettings.resolve({}, {}, env)
    conn = json.loads(env[f"AIRFLOW_CONN_{settings.aws_conn_id.upper()}"])
    assert conn["conn_type"] == "aws"
    endpoint = urlsplit(conn["extra"]["endpoint_url"])
    assert (endpoint.hostname, endpoint.port) == ("minio", 9000)
    minio_env = environment(services["minio"])
    assert (conn["login"], conn["password"]) == (minio_env["MINIO_ROOT_USER"], minio_env["MINIO_ROOT_PASSWORD"])


def test_the_worker_can_be_scaled(raw):
    worker = raw["services"]["airflow-worker"]
    assert "container_name" not in worker, "--scale needs generated container names"
    assert not worker.get("ports"), "--scale cannot publish one host port from several containers"
    assert not any("container_name" in s for s in raw["services"].values())
    published = [p for s in raw["services"].values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)), "two services publish the same host port"


# --------------------------------------------------------------------------- secrets


def test_no_secret_is_written_in_the_compose_file(raw):
    def walk(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, f"{path}/{i}")
        elif isinstance(node, str):
            yield path, node

    for path, value in walk(raw):
        name = path.rsplit("/", 1)[-1]
        if SECRET_NAME.search(name) and not name.endswith("_FILE"):
            assert re.fullmatch(r"\$\{\w+(:?\?[^}]*)?\}", value), f"{path} holds a literal or defaulted secret: {value!r}"
        for url in re.findall(r"[a-z0-9+]+://[^\s\"']+", value):
            password = urlsplit(url).password
            assert password in (None, "") or password.startswith("${"), f"{path}: a password in {url!r}"
        for match in re.finditer(r"\"(password|secret[_a-z]*|aws_secret_access_key)\"\s*:\s*\"([^\"]*)\"", value, re.IGNORECASE):
            assert match.group(2).startswith("${"), f"{path}: {match.group(1)} is a literal"
    # The well-known defaults of tutorials are nowhere.
    text = COMPOSE_FILE.read_text()
    for literal in ("minioadmin", "airflow:airflow@", "POSTGRES_PASSWORD: airflow", "_PASSWORD: admin"):
        assert literal not in text


def test_env_is_ignored_and_env_example_holds_no_secret(example_env):
    assert ENV_EXAMPLE.is_file()
    git = shutil.which("git")
    if git and (PROJECT / ".git").exists():
        ignored = subprocess.run([git, "check-ignore", "-q", ".env"], cwd=PROJECT).returncode == 0
        tracked = subprocess.run([git, "ls-files", "--error-unmatch", ".env"], cwd=PROJECT, capture_output=True).returncode == 0
        assert ignored and not tracked, ".env must be git-ignored and untracked"
    else:
        assert ".env" in {line.strip().lstrip("/") for line in (PROJECT / ".gitignore").read_text().splitlines()}
    for name, value in example_env.items():
        if SECRET_NAME.search(name):
            assert value == "", f".env.example gives {name} a value; secrets are left for each deployment to generate"


# --------------------------------------------------------------------------- the image


def test_dockerfile_builds_on_airflow_with_the_pinned_requirements():
    dockerfile = (PROJECT / "Dockerfile").read_text()
    instructions = [line.strip() for line in dockerfile.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    base = next(line for line in instructions if line.upper().startswith("FROM "))
    pinned = re.search(r"^apache-airflow==(\S+)$", (PROJECT / "requirements.txt").read_text(), re.MULTILINE).group(1)
    assert re.fullmatch(rf"FROM apache/airflow:{re.escape(pinned)}(-python3\.11)?", base), base
    assert pinned == "3.3.2"
    copied = " ".join(line for line in instructions if line.upper().startswith("COPY "))
    for needed in ("requirements.txt", "constraints.txt", "pyproject.toml", "include/"):
        assert needed in copied, f"the image needs {needed}"
    assert re.search(r"pip install --no-cache-dir -r \S*requirements\.txt -c \S*constraints\.txt", dockerfile)
    installs = re.findall(r"pip install [^\n\\]*", dockerfile)
    assert not any(" -e " in f" {line} " or "--editable" in line for line in installs), "the package is installed, not linked"
    assert any(re.search(r"--no-deps\s+/opt/patternflow\b", line) for line in installs)


def test_no_packages_are_installed_at_container_start(raw):
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in COMPOSE_FILE.read_text()
    assert "_PIP_ADDITIONAL_REQUIREMENTS" not in (PROJECT / "Dockerfile").read_text().split("\nFROM", 1)[-1]


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    ignored = {line.strip().strip("/") for line in (PROJECT / ".dockerignore").read_text().splitlines() if line.strip()}
    assert {".venv", "data", "output", ".airflow", ".run", ".git", ".env"} <= ignored


# --------------------------------------------------------------------------- the pipeline's settings


def test_pipeline_settings_in_the_compose_file_are_known_settings(services):
    known = {ENVIRONMENT_PREFIX + f.name.upper() for f in (*fields(PipelineSettings), *fields(DetectionConfig))}
    for name, service in services.items():
        used = {key for key in environment(service) if key.startswith(ENVIRONMENT_PREFIX)}
        assert used <= known, f"{name} sets unknown settings {sorted(used - known)}"


def test_the_dags_settings_resolve_and_their_files_are_mounted(raw, services):
    env = environment(services["airflow-worker"])
    settings = PipelineSettings.resolve({}, {}, env)  # validates bucket name, prefixes, paths
    assert settings.bucket == "patternflow"
    mounts = [volume.split(":")[1] for volume in raw[ANCHOR]["volumes"]]
    for path in (settings.transactions, settings.importance):
        assert any(path.startswith(mount.rstrip("/") + "/") for mount in mounts), f"{path} is not on a mounted folder"
    assert env["PATTERNFLOW_TRANSACTIONS"] == "/opt/airflow/data/transactions.csv"
    assert env["PATTERNFLOW_IMPORTANCE"] == "/opt/airflow/data/CustomerImportance.csv"
