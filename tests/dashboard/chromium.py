"""Debian's Chromium, headless, as a person's browser would show a page: the DOM after the page's
scripts ran, and a screenshot. Chromium's own headless mode, no driver and no Python library."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser")


def find_chromium() -> str:
    """The browser's path; skips the test without it, fails instead in CI (REQUIRE_NATIVE_SERVICES)."""
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    message = "Chromium is not installed (Debian: apt-get install chromium)"
    if os.environ.get("REQUIRE_NATIVE_SERVICES"):
        pytest.fail(message)
    pytest.skip(message)


def _run(browser: str, url: str, *flags: str, budget_ms: int = 15_000) -> str:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",  # tests run as root in CI, where Chromium refuses its sandbox
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            *flags,
            url,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def dump_dom(browser: str, url: str, *flags: str) -> str:
    """The page's DOM once its scripts ran (they get a virtual 15 s: loads and timers settle)."""
    return _run(browser, url, "--dump-dom", *flags)


def screenshot(browser: str, url: str, path: Path, size: tuple[int, int] = (1440, 1000), *flags: str) -> Path:
    _run(browser, url, f"--screenshot={path}", f"--window-size={size[0]},{size[1]}", *flags)
    assert path.is_file() and path.stat().st_size > 10_000, f"no screenshot at {path}"
    return path


class Figures(HTMLParser):
    """The numbers a page shows: the text of each ``data-figure`` element, the row count of each
    detection file (``data-file`` rows), and the cells of the latest detections (``data-latest`` rows)."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, list[str]] = {}
        self.file_rows: dict[str, str] = {}
        self.latest: list[list[str]] = []
        self._figure: tuple[str, list[str]] | None = None  # figures hold text only: none is nested
        self._file: str | None = None
        self._in_latest = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if "data-file" in values:
            self._file = values["data-file"]
        if "data-latest" in values:
            self._in_latest = True
            self.latest.append([])
        if tag == "td" and self._in_latest:
            self._cell = []
        if values.get("data-figure"):
            self._figure = (values["data-figure"], [])

    def handle_endtag(self, tag: str) -> None:
        if self._figure is not None and tag in ("span", "td"):
            name, text = self._figure
            if name == "file_rows" and self._file:
                self.file_rows[self._file] = "".join(text).strip()
            else:
                self.figures.setdefault(name, []).append("".join(text).strip())
            self._figure = None
        if tag == "td" and self._cell is not None:
            self.latest[-1].append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr":
            self._in_latest = False

    def handle_data(self, data: str) -> None:
        if self._figure is not None:
            self._figure[1].append(data)
        if self._cell is not None:
            self._cell.append(data)


def figures(html: str) -> Figures:
    parser = Figures()
    parser.feed(html)
    return parser


def number(text: str) -> float:
    """A figure as shown ("60,000", "0.53") as a number."""
    return float(text.replace(",", ""))
