"""The docs cannot rot: every relative link resolves, every `ldnet ...` command shown parses.

Links: each relative Markdown link in README.md and docs/*.md names an existing file, and an
anchor (``page.md#section``) names a heading of that page by GitHub's slug rules. Commands:
each line of a fenced code block that runs ``ldnet`` (also as ``.venv/bin/ldnet``, ``time
ldnet`` or ``torchrun ... -m ldnet.cli``) is split as the shell would and given to the
``ldnet`` parser itself, once without its ``[optional ...]`` parts and once with them.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from ldnet.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CLI_DIR = ROOT / "ldnet" / "cli"

FENCE = re.compile(r"^(```|~~~)")
# [text](target) but not ![image](...) alt text; the target stops at a space or ')'.
LINK = re.compile(r"(?<!\\)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`[^`]*`")
HEADING = re.compile(r"^(#{1,6})\s+(?P<title>.+?)\s*#*\s*$")
# A bracket group of optional words: `[--int8 --calibration DIR]`, `[key=value ...]`.
OPTIONAL = re.compile(r"\[(?P<inner>[^\[\]]*)\]")
LDNET_START = re.compile(
    r"^(?:time\s+)?(?:\S*/)?ldnet(?=\s|$)|^torchrun\b.*?-m\s+ldnet\.cli(?=\s|$)"
)


def split_blocks(text: str) -> tuple[list[str], list[list[str]]]:
    """The prose lines (code blocks blanked) and the fenced code blocks of a Markdown page."""
    prose, blocks, current = [], [], None
    for line in text.splitlines():
        if FENCE.match(line.strip()):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
            prose.append("")
        elif current is not None:
            current.append(line)
            prose.append("")
        else:
            prose.append(line)
    return prose, blocks


def github_slug(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link in a heading: its text
    title = title.replace("`", "").strip().lower()
    title = re.sub(r"[^\w\- ]", "", title)
    return title.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    prose, _ = split_blocks(page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set()
    for line in prose:
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group("title"))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(page: Path) -> list[tuple[int, str]]:
    prose, _ = split_blocks(page.read_text(encoding="utf-8"))
    links = []
    for number, line in enumerate(prose, 1):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            target = match.group("target").strip("<>")
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            links.append((number, target))
    return links


def link_problem(page: Path, target: str) -> str | None:
    path_part, _, anchor = target.partition("#")
    destination = (page.parent / path_part).resolve() if path_part else page
    if not destination.exists():
        return f"{path_part} does not exist"
    if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
        return f"no heading with anchor #{anchor} in {destination.name}"
    return None


def shown_commands(page: Path) -> list[tuple[str, list[str]]]:
    """Each `ldnet` command of the page's code blocks: (the line as shown, its words)."""
    _, blocks = split_blocks(page.read_text(encoding="utf-8"))
    commands = []
    for block in blocks:
        joined, pending = [], ""
        for line in block:  # join line continuations
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
            else:
                joined.append(pending + line)
                pending = ""
        for line in joined:
            line = line.strip().removeprefix("$ ")
            start = LDNET_START.match(line)
            if not start:
                continue
            commands.append((line, line[start.end() :]))
    return commands


def variants(rest: str) -> list[list[str]]:
    """The words of a shown command without its optional parts, and with them."""
    without = rest
    while OPTIONAL.search(without):
        without = OPTIONAL.sub("", without)

    def expand(match: re.Match) -> str:
        words = match.group("inner").replace("...", " ").split()
        return " ".join(word.split("|")[0] for word in words)

    with_all = rest
    while OPTIONAL.search(with_all):
        with_all = OPTIONAL.sub(expand, with_all)
    return [shlex.split(text, comments=True) for text in dict.fromkeys((without, with_all))]


def parse_problem(words: list[str]) -> str | None:
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args(words)
        except SystemExit as stop:
            if stop.code:
                return stderr.getvalue().strip() or f"exit {stop.code}"
    return None


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_resolve(page):
    problems = [
        f"{page_id(page)}:{number}: ({target}) {problem}"
        for number, target in relative_links(page)
        if (problem := link_problem(page, target))
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_shown_commands_parse(page):
    problems = []
    for shown, rest in shown_commands(page):
        for words in variants(rest):
            if problem := parse_problem(words):
                problems.append(f"{page_id(page)}: {shown!r} -> {words}: {problem}")
    assert not problems, "\n".join(problems)


def test_every_page_is_linked_and_titled():
    readme = {target.partition("#")[0] for _, target in relative_links(ROOT / "README.md")}
    for page in PAGES[1:]:
        assert f"docs/{page.name}" in readme, f"README does not link docs/{page.name}"
        assert page.read_text(encoding="utf-8").startswith("# "), f"{page_id(page)}: no title"


def test_readme_is_a_short_guide():
    """The README stays a user guide: short, and no dated lab notes (they go to measurements)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    notes = [
        (kind, match.group(0))
        for kind, pattern in (
            ("date", r"\b20\d\d-\d\d-\d\d\b"),
            ("time of day", r"\b\d\d:\d\d\b|\bUTC\b"),
            ("commit id", r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b"),
            ("session", r"\b(?:earlier|previous|this) session\b"),
        )
        for match in re.finditer(pattern, text)
    ]
    assert not notes, f"README holds lab notes (move them to docs/measurements.md): {notes}"


def test_cli_help_names_existing_pages():
    """A help string that points at the docs points at a page that exists."""
    named = set()
    for source in CLI_DIR.glob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert "see docs)" not in text, f"{source.name}: 'see docs' names no page"
        named.update(re.findall(r"docs/[\w./-]+\.md", text))
    assert named, "no help string names a docs page"
    missing = sorted(name for name in named if not (ROOT / name).is_file())
    assert not missing, f"help strings name missing pages: {missing}"


def test_the_checks_can_fail(tmp_path):
    """Controls: a broken link, a missing anchor and a command that does not parse are caught."""
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## A `code` heading, here\n\n[ok](#a-code-heading-here) [bad](missing.md)"
        " [anchor](#nowhere)\n\n```\nldnet predict photo.jpg --weights W --output out"
        " [--backend pytorch|onnxruntime]\n"
        "ldnet predict photo.jpg --weights W --output out --no-such-flag\n"
        "ldnet bench --batch N\n```\n",
        encoding="utf-8",
    )
    problems = [link_problem(page, target) for _, target in relative_links(page)]
    assert problems[0] is None and "does not exist" in problems[1] and "#nowhere" in problems[2]
    results = [[parse_problem(w) for w in variants(rest)] for _, rest in shown_commands(page)]
    assert results[0] == [None, None]
    assert "unrecognized arguments" in results[1][0]
    assert "positive integer" in results[2][0]
