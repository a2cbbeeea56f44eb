"""The stream view (``stream_view.build_view``) as HTML: the one rendering the page and the report share.

Every figure shown carries ``data-figure="<name>"`` so that a test (or a person's script) can
read the numbers off the page; every value from S3 is escaped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from importlib import resources

from patternflow.engine.detections import FILE_HEADER
from patternflow.web.charts import detections_chart, lag_chart


def stylesheet() -> str:
    return resources.files("patternflow.web").joinpath("assets/style.css").read_text()


def render_sections(view: dict) -> str:
    """The page's body: status, progress tiles, the two charts, latest detections, files, chunks."""
    return "\n".join(
        (
            _heading(view),
            _tiles(view),
            _charts(view),
            _latest(view["latest_detections"], view["progress"]["finished"]),
            _files(view),
            _chunks(view["chunks"]),
        )
    )


def _figure(name: str, value: object, text: str | None = None) -> str:
    shown = text if text is not None else (f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value))
    return f'<span data-figure="{escape(name)}" data-value="{escape(str(value))}">{escape(shown)}</span>'


def _heading(view: dict) -> str:
    progress = view["progress"]
    if not progress["started"]:
        status, css = "no stream yet", "pf-running"
    elif progress["finished"]:
        status, css = "finished", "pf-done"
    else:
        status, css = "streaming", "pf-running"
    generated = datetime.fromtimestamp(view["generated_at"], UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f'<p class="pf-subtitle">Stream in <code>s3://{escape(view["bucket"])}</code> '
        f'<span class="pf-status {css}" data-figure="status" data-value="{status}">{status}</span> '
        f"&middot; as of {generated}</p>"
    )


def _tiles(view: dict) -> str:
    progress, detections, lag = view["progress"], view["detections"], view["lag_seconds"]
    total = progress["chunks_total"]
    of_total = f" <small>of {total:,}</small>" if total is not None else ""
    end = "reached" if progress["end_of_stream_marker"] else "not yet"
    tiles = [
        ("Chunks uploaded", _figure("chunks_uploaded", progress["chunks_uploaded"] or 0) + of_total),
        ("Chunks processed", _figure("chunks_processed", progress["chunks_processed"]) + of_total),
        ("Rows processed", _figure("rows_processed", progress["rows_processed"])),
        ("End of stream", _figure("end_of_stream_marker", progress["end_of_stream_marker"], end)),
        ("Detections", _figure("detections_total", detections["total"])),
        *((pattern, _figure(f"detections_{pattern}", count)) for pattern, count in detections["by_pattern"].items()),
        ("Detection files", _figure("files", len(view["files"]))),
        ("Lag median / max", _lag(lag)),
    ]
    cells = "".join(f'<div class="pf-tile"><dl><dt>{escape(label)}</dt><dd>{value}</dd></dl></div>' for label, value in tiles)
    return f'<section class="pf-tiles" aria-label="Stream progress">{cells}</section>'


def _lag(lag: dict | None) -> str:
    if not lag:
        return "&ndash;"
    median = _figure("lag_median", round(lag["median"], 2), f"{lag['median']:.2f}")
    longest = _figure("lag_max", round(lag["max"], 2), f"{lag['max']:.2f}")
    return f"{median} / {longest} <small>s</small>"


def _charts(view: dict) -> str:
    pending = view["detections"]["pending"]
    waiting = f"{_figure('detections_pending', pending)} detections wait for the next file of 50 rows"
    note = f'<p class="pf-note">{waiting}.</p>' if pending else ""
    return (
        '<section class="pf-grid2">'
        f'<div class="pf-panel"><h2>Lag per chunk over time</h2>{lag_chart(view["chunks"])}</div>'
        f'<div class="pf-panel"><h2>Detections per pattern</h2>{detections_chart(view["detections"]["by_pattern"])}{note}</div>'
        "</section>"
    )


def _cell(row: dict, column: str) -> str:
    if column == "file" and not row.get("file"):
        return "(waiting for its file of 50)"
    return str(row.get(column, ""))


def _latest(rows: list[dict], finished: bool) -> str:
    columns = (*FILE_HEADER, "file")
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join("<tr data-latest>" + "".join(f"<td>{escape(_cell(row, c))}</td>" for c in columns) + "</tr>" for row in rows)
    none = "no detection: the stream is finished" if finished else "no detection yet"
    empty = "" if rows else f'<tr><td colspan="{len(columns)}">{none}</td></tr>'
    return (
        '<section class="pf-panel" style="margin-bottom:16px"><h2>Latest detections</h2>'
        f'<div class="pf-scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}{empty}</tbody></table></div></section>"
    )


def _files(view: dict) -> str:
    """The detection files, and beside them the merchant partitions of a partitioned stream."""
    rows = "".join(
        f'<tr data-file="{escape(f["name"])}"><td>{escape(f["name"])}</td>'
        f'<td class="pf-num" data-figure="file_rows" data-value="{f["rows"]}">{f["rows"]}</td></tr>'
        for f in reversed(view["files"])
    )
    empty = "" if view["files"] else '<tr><td colspan="2">no detection file yet</td></tr>'
    return (
        '<section class="pf-grid2"><div class="pf-panel"><h2>Detection files</h2>'
        f'<div class="pf-scroll"><table><thead><tr><th>file</th><th class="pf-num">rows</th></tr></thead><tbody>{rows}{empty}</tbody>'
        f'</table></div><p class="pf-note">{_figure("rows_in_files", view["detections"]["in_files"])} rows in '
        f"{len(view['files'])} files under <code>{escape(_prefix(view))}</code></p></div>{_partitions(view)}</section>"
    )


def _partitions(view: dict) -> str:
    """Each merchant partition's committed state: how far it reaches, its size and its last run
    (nothing for a stream of one partition, whose figures are the stream's own)."""
    partitions = view.get("partitions")
    if not partitions:
        return ""
    columns = ("partition", "last chunk", "state size", "last run")
    head = "".join(f'<th class="pf-num">{c}</th>' if c != "last run" else f"<th>{c}</th>" for c in columns)
    body = "".join(_partition_row(p) for p in partitions)
    merged = view["progress"]["chunks_processed"]
    return (
        f'<div class="pf-panel" data-partitions><h2>Merchant partitions</h2>'
        f'<div class="pf-scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
        f'<p class="pf-note">{_figure("partitions", len(partitions))} partitions, each folding the rows of its merchants; '
        f"the files are written for the chunks every partition has processed ({merged:,} so far).</p></div>"
    )


def _partition_row(p: dict) -> str:
    """One partition's row; a partition that never committed is shown muted, as not started."""

    def cell(name: str, value: object, text: str, numeric: bool = True) -> str:
        css = ' class="pf-num"' if numeric else ""
        return f'<td{css} data-figure="partition_{name}" data-value="{escape(str(value))}">{escape(text)}</td>'

    idle = ' class="pf-idle"' if not p["started"] else ""
    last = p["last_chunk"]
    return (
        f'<tr data-partition="{p["partition"]}"{idle}><td class="pf-num">{p["partition"]}</td>'
        + cell("last_chunk", "" if last is None else last, "\u2013" if last is None else f"{last:,}")
        + cell("state_bytes", p["state_bytes"], _size(p["state_bytes"]) if p["started"] else "\u2013")
        + cell("last_run", p["committed_at"] or "", _moment(p["committed_at"]) if p["committed_at"] else "not started", False)
        + "</tr>"
    )


def _size(size: int) -> str:
    """Bytes as KiB below a MiB, else as MiB."""
    return f"{size / 1024:,.1f} KiB" if size < 1024 * 1024 else f"{size / (1024 * 1024):,.1f} MiB"


def _moment(iso: str) -> str:
    """A commit time (ISO 8601, IST) in UTC, as the page's "as of" is shown."""
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return iso


def _prefix(view: dict) -> str:
    return view["files"][0]["key"].rsplit("/", 1)[0] + "/" if view["files"] else ""


def _chunks(chunks: list[dict]) -> str:
    columns = ("chunk", "rows", "quarantined", "processing (s)", "lag (s)", "PatId1", "PatId2", "PatId3", "files written")
    head = "".join(f'<th class="pf-num">{c}</th>' if c != "files written" else f"<th>{c}</th>" for c in columns)
    body = "".join(
        f'<tr data-chunk="{c["index"]}"><td class="pf-num">{c["index"]}</td><td class="pf-num">{c["rows"]:,}</td>'
        f'<td class="pf-num">{c["rows_quarantined"]:,}</td><td class="pf-num">{c["processing_seconds"]:.2f}</td>'
        f'<td class="pf-num" data-figure="chunk_lag" data-value="{c["lag_seconds"]:.3f}">{c["lag_seconds"]:.2f}</td>'
        + "".join(f'<td class="pf-num">{n}</td>' for n in c["new_detections"].values())
        + f"<td>{escape(', '.join(c['files']))}</td></tr>"
        for c in reversed(chunks)
    )
    return (
        f'<section class="pf-panel"><details><summary>Per-chunk metrics ({len(chunks)} chunks)</summary>'
        f'<div class="pf-scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></details></section>'
    )
