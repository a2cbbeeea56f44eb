"""Detection rows and the 50-row detection files they are cut into."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import pyarrow as pa

from patternflow.ingest import columns

FILE_HEADER = ("YStartTime", "detectionTime", "patternId", "ActionType", "customerName", "MerchantId")

PENDING_SCHEMA = pa.schema(
    [
        ("y_start_time", pa.string()),
        ("detection_time", pa.string()),
        ("pattern_id", pa.string()),
        ("action_type", pa.string()),
        ("customer", pa.string()),
        ("merchant", pa.string()),
    ]
)


@dataclass(frozen=True)
class Detection:
    y_start_time: str
    """When processing of the detection's chunk began (ISO-8601, IST)."""
    detection_time: str
    """When the detection was made (ISO-8601, IST)."""
    pattern_id: str
    action_type: str
    customer: str
    merchant: str


@dataclass(frozen=True)
class DetectionFile:
    number: int
    rows: tuple[Detection, ...]

    @property
    def name(self) -> str:
        return detection_file_name(self.number)

    def to_csv(self) -> bytes:
        return detections_csv(self.rows)


def cut_files(pending: list[Detection], first_number: int, size: int, final: bool) -> tuple[list[DetectionFile], list[Detection]]:
    """Full files of ``size`` rows from the rows waiting, numbered from ``first_number`` (with
    ``final``, the 1 to ``size - 1`` rows left too); and the rows still waiting."""
    files = []
    while len(pending) >= size or (final and pending):
        rows, pending = pending[:size], pending[size:]
        files.append(DetectionFile(first_number + len(files), tuple(rows)))
    return files, pending


def detection_file_name(number: int) -> str:
    return f"detection_{number}.csv"


DETECTION_FILE = re.compile(r"detection_(\d+)\.csv")
"""A name ``detection_file_name`` gives (to ``fullmatch``); group 1 is the file's number."""


def detections_csv(rows: tuple[Detection, ...] | list[Detection]) -> bytes:
    """CSV with the contract's header; ids bare (a value holding a comma or quote is CSV-quoted)."""
    out = io.StringIO()
    out.write(",".join(FILE_HEADER) + "\n")
    for row in rows:
        values = (row.y_start_time, row.detection_time, row.pattern_id, row.action_type, row.customer, row.merchant)
        out.write(",".join(_csv_value(v) for v in values) + "\n")
    return out.getvalue().encode()


def _csv_value(value: str) -> str:
    if any(ch in value for ch in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def pending_table(rows: list[Detection]) -> pa.Table:
    return columns.table({name: [getattr(r, name) for r in rows] for name in PENDING_SCHEMA.names}, PENDING_SCHEMA)


def pending_rows(table: pa.Table) -> list[Detection]:
    return [Detection(**row) for row in table.to_pylist()]
