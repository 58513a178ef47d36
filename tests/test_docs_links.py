"""Every relative link in README.md and docs/ points to a file of the repository and, with an anchor,
to a heading of that file (anchors made the way GitHub makes them)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Written on another branch: checked like any page once it exists here.
WRITTEN_ELSEWHERE = {ROOT / "docs" / "architecture.md"}

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    return _CODE.sub("", _FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped, spaces made hyphens."""
    text = html.unescape(heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a page's headings make, with GitHub's -1, -2 suffixes for repeated ones."""
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def relative_links(page: Path) -> list[str]:
    return [
        target
        for target in _LINK.findall(prose(page.read_text(encoding="utf-8")))
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)
    ]


def broken(page: Path, root: Path = ROOT) -> list[str]:
    """One line per link of the page that does not resolve."""
    problems = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if dest in WRITTEN_ELSEWHERE and not dest.exists():
            continue
        if not dest.exists():
            problems.append(f"{target}: no file {dest.relative_to(root)}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(root)}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken(page) == []


def test_the_check_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\n## Some: `thing` here\n", encoding="utf-8")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#some-thing-here) [gone](c.md) [bad](a.md#nothing) [self](#here)\n\n## Here\n"
        "`[not a link](x.md)`\n```\n[nor this](y.md)\n```\n[web](https://example.com/x.md)\n",
        encoding="utf-8",
    )
    assert relative_links(page) == ["a.md#some-thing-here", "c.md", "a.md#nothing", "#here"]
    assert anchors(tmp_path / "a.md") == {"title", "some-thing-here"}
    assert broken(page, tmp_path) == [
        "c.md: no file c.md",
        "a.md#nothing: no heading with anchor #nothing in a.md",
    ]


def test_the_pages_have_links_to_check() -> None:
    readme = relative_links(ROOT / "README.md")
    assert "docs/index.md" in readme
    index = {target.partition("#")[0] for target in relative_links(ROOT / "docs" / "index.md")}
    missing = {page.name for page in PAGES[1:]} - index - {"index.md"}
    assert missing == set(), f"docs pages the map (docs/index.md) does not link: {sorted(missing)}"


def test_the_readme_keeps_the_test_command() -> None:
    """`.ci/run` runs the README's test command: the README must name it."""
    assert "scripts/test.sh" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "scripts/test.sh" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
