"""The documentation: the site builds strictly, the README stays short and points at real pages."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from markdown.extensions.toc import slugify

PROJECT = Path(__file__).resolve().parents[2]
README = PROJECT / "README.md"
DOCS = PROJECT / "docs"
MAX_README_LINES = 200

# A Markdown link or image target: ](target) or ](target "title").
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


class _IgnoringPythonTags(yaml.SafeLoader):
    """mkdocs.yml names Python objects (!!python/name:...); their values do not matter here."""


_IgnoringPythonTags.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: None)


def nav_pages(nav: object) -> set[str]:
    """Every page a nav (a page, a list of entries, or a {title: entries} mapping) lists."""
    if isinstance(nav, str):
        return {nav}
    entries = nav.values() if isinstance(nav, dict) else nav if isinstance(nav, list) else []
    return {page for entry in entries for page in nav_pages(entry)}


def test_the_site_builds_strictly(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # no notice about MkDocs 2 on the output
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def test_the_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; the rest belongs in docs/"


def test_every_readme_link_into_docs_resolves():
    targets = [t for t in LINK.findall(README.read_text(encoding="utf-8")) if t.startswith("docs/")]
    assert targets, "README.md links to no page of docs/"
    missing = [t for t in targets if not (PROJECT / t.split("#", 1)[0]).is_file()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
    for target in targets:
        path, _, anchor = target.partition("#")
        if anchor:
            assert anchor in headings(PROJECT / path), f"README.md links to {target}, a heading {path} does not have"


def headings(page: Path) -> set[str]:
    """The anchors of a page's headings, as the site's table of contents names them."""
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text(encoding="utf-8"))
    return {slugify(re.sub(r"[`*]", "", title), "-") for title in re.findall(r"(?m)^#{1,6}\s+(.+?)\s*$", text)}


def test_every_page_is_in_the_nav():
    config = yaml.load((PROJECT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_IgnoringPythonTags)
    assert config["docs_dir"] == "docs"
    listed = nav_pages(config["nav"])
    pages = {path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md")}
    assert pages - listed == set(), f"pages missing from nav in mkdocs.yml: {sorted(pages - listed)}"
    assert listed - pages == set(), f"nav lists pages that do not exist: {sorted(listed - pages)}"
