"""The README and docs hold together: every relative link points at a file that exists (and a heading
that exists, for `#anchor` links into Markdown), and the README keeps the sections other pages and the
issues point at. A session once replaced the README with its first 40 lines, and nothing noticed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
README_SECTIONS = [
    "The two commands",
    "Install",
    "The smallest use",
    "The local backend",
    "Node start-up scripts",
    "The `raydog` command",
    "Nothing outlives its run",
    "Measured",
    "The fault matrix",
    "Development",
]


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_anchor(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_at_what_exists(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target == "#":
            continue  # http(s), mailto: not checked offline
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no heading with that anchor in {linked.name}")
    assert broken == [], f"{page.name}: {broken}"


def test_the_readme_keeps_its_sections() -> None:
    headings = [
        line[3:].strip() for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("## ")
    ]
    assert [s for s in README_SECTIONS if s not in headings] == []
