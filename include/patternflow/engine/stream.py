"""Driving the engine over a stream: resume from committed state, write files, commit.

Shared by ``patternflow replay`` (local files) and the detection DAG (S3), so that both write
exactly the same detection files for the same input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pyarrow as pa

from patternflow.engine.clock import Clock, now_ist
from patternflow.engine.config import DetectionConfig
from patternflow.engine.detection_engine import DetectionEngine, WeightRanks
from patternflow.engine.detections import DetectionFile
from patternflow.engine.state import StateError, StateStore
from patternflow.engine.store import ObjectStore


def open_engine(
    state: StateStore | None,
    load_importance: Callable[[], pa.Table | Iterable[pa.Table] | WeightRanks],
    config: DetectionConfig,
    clock: Clock = now_ist,
) -> DetectionEngine:
    """The engine at the last committed state, or at the start of a new stream.

    CustomerImportance is read only when a stream starts: afterwards its weights are part of
    the state.
    """
    loaded = state.load() if state is not None else None
    if loaded is None:
        return DetectionEngine.start(load_importance(), config, clock)
    check_same_config(loaded.config, config)
    return DetectionEngine(config, loaded.state, clock)


def check_same_config(recorded: DetectionConfig, config: DetectionConfig) -> None:
    """A stream is never resumed under other rules than it started with."""
    if recorded != config:
        raise StateError(
            f"the stream's state was started with different settings: {recorded.to_json()} "
            f"(now {config.to_json()}); reset the stream to start over with the new ones"
        )


def write_files(outputs: ObjectStore, prefix: str, files: list[DetectionFile]) -> list[str]:
    """Write detection files; the same file number always gets the same key, so a rerun overwrites."""
    keys = []
    for file in files:
        key = f"{prefix}{file.name}"
        outputs.put(key, file.to_csv())
        keys.append(key)
    return keys


def commit(state: StateStore | None, engine: DetectionEngine) -> int | None:
    return state.commit(engine, engine.config) if state is not None else None
