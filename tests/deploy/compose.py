"""Reading docker-compose.yaml the way Compose does, without a Docker engine.

- ``load``: the YAML with merge keys (``<<: *anchor``) resolved, as ``yaml.safe_load`` does.
- ``variables``: every ``${VAR...}`` reference of the raw text, with its kind (default, required).
- ``interpolate``: the Compose Specification's interpolation, applied to every string value.
- ``read_env_file``: a ``.env`` file as Compose reads it (``KEY=value``, comments, quotes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = PROJECT / "docker-compose.yaml"
ENV_EXAMPLE = PROJECT / ".env.example"
# The Compose Specification's JSON schema as Debian's docker-compose package ships it (installed by
# .ci/run; no Docker engine needed). Found at run time, never copied into the project.
SCHEMA_FILES = sorted(Path("/usr/lib/python3/dist-packages/compose/config").glob("compose_spec.json"))

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt}, ${NAME+alt};
# $$ is a literal dollar sign. Defaults may hold further references, hence the small parser below.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InterpolationError(ValueError):
    """A required variable (``${VAR:?...}``) has no value, or a reference is malformed."""


@dataclass(frozen=True)
class Reference:
    name: str
    operator: str  # "" (plain), ":-", "-", ":?", "?", ":+", "+"
    argument: str

    @property
    def has_default(self) -> bool:
        return self.operator in (":-", "-", ":+", "+")

    @property
    def required(self) -> bool:
        return self.operator in (":?", "?")


def load(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def read_env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep or not _NAME.fullmatch(name.strip()):
            raise ValueError(f"{path.name} line {number}: not KEY=value: {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def _parse(text: str, start: int) -> tuple[Reference, int]:
    """The reference starting at text[start] == "${"; returns it and the index after its "}"."""
    match = _NAME.match(text, start + 2)
    if not match:
        raise InterpolationError(f"invalid reference at {text[start : start + 20]!r}")
    name, i = match.group(), match.end()
    operator = ""
    for candidate in (":-", ":?", ":+", "-", "?", "+"):
        if text.startswith(candidate, i):
            operator, i = candidate, i + len(candidate)
            break
    depth, begin = 1, i
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth, i = depth + 1, i + 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return Reference(name, operator, text[begin:i]), i + 1
        i += 1
    raise InterpolationError(f"unterminated reference at {text[start : start + 20]!r}")


def references(text: str) -> list[Reference]:
    """Every ``${...}`` reference in ``text``, nested ones included; ``$${...}`` is not one."""
    found, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
        elif text.startswith("${", i):
            ref, end = _parse(text, i)
            found.append(ref)
            found.extend(references(ref.argument))
            i = end
        else:
            i += 1
    return found


def interpolate_string(text: str, env: dict[str, str]) -> str:
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            ref, i = _parse(text, i)
            value = env.get(ref.name)
            is_set, is_non_empty = value is not None, bool(value)
            if ref.operator == "":
                out.append(value or "")
            elif ref.operator in (":-", "-"):
                use_default = not is_non_empty if ref.operator == ":-" else not is_set
                out.append(interpolate_string(ref.argument, env) if use_default else value or "")
            elif ref.operator in (":?", "?"):
                missing = not is_non_empty if ref.operator == ":?" else not is_set
                if missing:
                    raise InterpolationError(f"required variable {ref.name} is missing a value: {ref.argument}")
                out.append(value or "")
            else:  # ":+" / "+": the alternative when set
                present = is_non_empty if ref.operator == ":+" else is_set
                out.append(interpolate_string(ref.argument, env) if present else "")
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def strings(node: Any) -> list[str]:
    """Every string value of a loaded compose file: what Compose interpolates (not the comments)."""
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def interpolate(node: Any, env: dict[str, str]) -> Any:
    """``node`` with every string value interpolated (keys are left as they are, as in Compose)."""
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env) for value in node]
    if isinstance(node, str):
        return interpolate_string(node, env)
    return node
