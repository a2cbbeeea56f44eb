"""Pipeline settings: precedence, conversion and validation."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from patternflow.pipeline.settings import PipelineSettings, SettingsError, descriptions


def variables(**values):
    """The JSON object of the Variable patternflow_settings."""
    return values


def test_defaults_are_the_documented_ones():
    settings = PipelineSettings.resolve({}, variables(), {})
    assert settings == PipelineSettings()
    assert (settings.bucket, settings.chunks_prefix, settings.output_prefix) == ("patternflow", "transaction_chunks/", "output_detections/")
    assert (settings.chunk_size, settings.tick_seconds) == (10_000, 1.0)
    assert set(descriptions()) == set(PipelineSettings().to_json())


def test_params_beat_variables_beat_environment_beat_defaults():
    environ = {"PATTERNFLOW_BUCKET": "from-env", "PATTERNFLOW_CHUNK_SIZE": "300", "PATTERNFLOW_TICK_SECONDS": "0.5"}
    found = variables(bucket="from-variable", chunk_size=200)
    settings = PipelineSettings.resolve({"bucket": "from-param", "chunk_size": None}, found, environ)
    assert settings.bucket == "from-param"
    assert settings.chunk_size == 200
    assert settings.tick_seconds == 0.5
    assert settings.max_rows_per_run == 250_000 and settings.max_chunks_per_run == 0


def test_a_bad_value_names_the_setting_and_where_it_came_from():
    with pytest.raises(SettingsError, match=r"chunk_size from Variable patternflow_settings key chunk_size: 'ten'"):
        PipelineSettings.resolve({}, variables(chunk_size="ten"), {})
    with pytest.raises(SettingsError, match=r"unknown settings \['bukcet'\]"):
        PipelineSettings.resolve({}, variables(bukcet="typo"), {})
    with pytest.raises(SettingsError, match=r"chunk_size must be at least 1"):
        PipelineSettings.resolve({"chunk_size": 0}, variables(), {})
    with pytest.raises(SettingsError, match=r"tick_seconds must be more than 0"):
        PipelineSettings.resolve({}, variables(), {"PATTERNFLOW_TICK_SECONDS": "-1"})


@pytest.mark.parametrize("name", ["ab", "Upper", "under_score", "-dash", "a" * 64, "1.2.3.4", "dots..twice"])
def test_bucket_names_follow_the_s3_rules(name):
    with pytest.raises(SettingsError, match="not a valid S3 bucket name"):
        PipelineSettings(bucket=name)


@pytest.mark.parametrize("prefix", ["../escape/", "a/../b/", "/absolute/", "", "/", "a//b/", "./x/"])
def test_prefixes_cannot_escape_or_be_empty(prefix):
    with pytest.raises(SettingsError, match="relative key prefix"):
        PipelineSettings(output_prefix=prefix)


def test_prefixes_are_normalised_and_must_not_overlap():
    assert PipelineSettings(output_prefix="out/detections").output_prefix == "out/detections/"
    with pytest.raises(SettingsError, match="overlap"):
        PipelineSettings(state_prefix="transaction_chunks/state/")


def test_s3_sources_must_name_an_object():
    assert PipelineSettings(transactions="s3://raw-data/banksim/transactions.csv").transactions.startswith("s3://")
    with pytest.raises(SettingsError, match="must name an object"):
        PipelineSettings(transactions="s3://raw-data/")


def test_detection_thresholds_come_from_variables_and_environment():
    config = PipelineSettings.detection_config(
        variables(child_min_transactions=5), {"PATTERNFLOW_CHILD_MAX_AVERAGE_AMOUNT": "12.5", "PATTERNFLOW_CHUNK_SIZE": "7"}
    )
    assert config.child_min_transactions == 5
    assert config.child_max_average_amount == Decimal("12.5")
    assert config.chunk_size == 10_000  # a stream's chunk size is in its manifest, not here
    environ = {"PATTERNFLOW_CHUNK_SIZE": "7"}
    assert PipelineSettings.detection_config(variables(), environ, with_chunk_size=True).chunk_size == 7  # a stream cut here
    with pytest.raises(SettingsError, match="detection settings"):
        PipelineSettings.detection_config(variables(), {"PATTERNFLOW_UPGRADE_COUNT_QUANTILE": "1.5"})


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("environment", "2.5", "partitions from environment PATTERNFLOW_PARTITIONS: '2.5' is not a valid int"),
        ("environment", "four", "partitions from environment PATTERNFLOW_PARTITIONS: 'four' is not a valid int"),
        ("environment", "0", "partitions must be at least 1, got 0"),
        ("variable", 2.5, "partitions from Variable patternflow_settings key partitions: 2.5 is not a valid int"),
        ("variable", True, "partitions from Variable patternflow_settings key partitions: True is not a valid int"),
        ("variable", -3, "partitions must be at least 1, got -3"),
    ],
)
def test_a_bad_number_of_partitions_is_refused_naming_the_setting(monkeypatch, where, value, message):
    if where == "environment":
        monkeypatch.setenv("PATTERNFLOW_PARTITIONS", value)
        variables = {}
    else:
        variables = {"partitions": value}
    with pytest.raises(SettingsError, match=re.escape(message)):
        PipelineSettings.resolve(None, variables)
    monkeypatch.setenv("PATTERNFLOW_PARTITIONS", "4")
    assert PipelineSettings.resolve(None, {}).partitions == 4


def test_the_state_defaults_are_the_state_stores():
    """The settings module stays free of the engine's imports (DAG files parse it), so its
    defaults repeat the state store's: they must agree."""
    from patternflow.engine.state import SNAPSHOT_BYTES, SNAPSHOT_EVERY

    settings = PipelineSettings()
    assert (settings.state_snapshot_every, settings.state_snapshot_bytes) == (SNAPSHOT_EVERY, SNAPSHOT_BYTES)
