"""``patternflow report``: the "Pattern detections" page of a stream as one standalone HTML file.

For people who are not in the Airflow UI: the same figures and plots as the page (both come
from ``stream_view`` and ``view_html``), the stylesheet inlined, the plots inline SVG, no script
and no link to anything, so the file opens anywhere, offline, and can be mailed or archived.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from patternflow.engine.store import ObjectStore
from patternflow.errors import PatternflowError
from patternflow.pipeline.settings import PipelineSettings
from patternflow.web.stream_view import build_view
from patternflow.web.view_html import render_sections, stylesheet

TITLE = "Pattern detections"


class ReportError(PatternflowError):
    """The stream cannot be reported on (none there, or not finished)."""


_PRINTED = ".pf-scroll { max-height: none; }"
"""A file is read whole: tables are not cut to a scrolling box as they are in the page."""


def render_report(view: dict) -> str:
    """A complete HTML document; light or dark after the reader's system setting."""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{TITLE} &middot; s3://{escape(view['bucket'])}</title><style>{stylesheet()}{_PRINTED}</style></head>"
        f"<body><h1>{TITLE}</h1>\n{render_sections(view)}\n</body></html>\n"
    )


def write_report(store: ObjectStore, settings: PipelineSettings, out: Path, unfinished: bool = False) -> dict:
    """Write the report of the stream on ``store`` to ``out``; the view it shows."""
    view = build_view(store, settings)
    if not view["progress"]["started"]:
        raise ReportError(f"no stream in s3://{settings.bucket}/{settings.chunks_prefix} (no stream manifest)")
    if not view["progress"]["finished"] and not unfinished:
        progress = view["progress"]
        raise ReportError(
            f"the stream in s3://{settings.bucket} is not finished ({progress['chunks_processed']} of "
            f"{progress['chunks_total']} chunks processed); wait for it, or pass --unfinished for a report of where it stands"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(view))
    return view
