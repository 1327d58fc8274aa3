"""The documentation leads somewhere: links, anchors and the code's references to it.

README.md and docs/*.md link to each other and name the code that does what they
describe; the code's comments cite the docs ("invariant 9", "docs/operations.md,
"Durability""). These tests keep both directions from going dead when files move.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
CODE_PATH = re.compile(r"`((?:mailprefs|tests|bench|templates|migrations)/[\w./-]+)`")
DOC_REFERENCE = re.compile(r"(docs/[\w.-]+\.md)(?:, \"([^\"]+)\")?")


def prose(path: Path) -> str:
    """The file without its fenced code blocks (a `# comment` there is no heading)."""
    return FENCE.sub("", path.read_text())


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in HEADING.findall(prose(path)):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def headings(path: Path) -> set[str]:
    return {re.sub(r"`", "", h) for h in HEADING.findall(prose(path))}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(doc: Path):
    """Promise (issue 12): a reader following a link in README.md or docs/ lands on a
    file that exists, and on the heading the link names."""
    dead = []
    for target in LINK.findall(prose(doc)):
        if re.match(r"[a-z]+:", target):
            continue  # http(s):, mailto: — not ours to check
        path_part, _, anchor = target.partition("#")
        file = (doc.parent / path_part).resolve() if path_part else doc
        if not file.exists():
            dead.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            dead.append(f"{target}: no heading with that anchor")
    assert dead == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_code_path_the_docs_name_exists(doc: Path):
    """Promise (issue 12): a file the docs point a reader to (`mailprefs/domain/gate.py`,
    `tests/delivery/test_processes.py`) is there to be read."""
    text = doc.read_text()
    missing = [
        path
        for path in CODE_PATH.findall(text)
        if not any(c in path for c in "*{") and not (ROOT / path.rstrip("/")).exists()
    ]
    assert missing == []


def _code_files() -> list[Path]:
    files = [ROOT / "Makefile", ROOT / "migrations" / "README"]
    for folder in ("mailprefs", "tests", "bench", "migrations"):
        files += (ROOT / folder).rglob("*.py")
    return [f for f in files if f.name != "test_docs.py"]


def test_the_codes_references_to_the_docs_resolve():
    """Promise (issue 12): a comment that sends the reader to the docs names a file (and
    section) that exists, and no comment cites a file the repository does not have."""
    dead = []
    for file in _code_files():
        text = file.read_text()
        where = file.relative_to(ROOT)
        for name in ("API.md", "DESIGN.md", "STYLE.md", "mailprefs.devtools"):
            if name in text:
                dead.append(f"{where}: cites {name}, which the repository does not have")
        for match in DOC_REFERENCE.finditer(text):
            doc, section = ROOT / match.group(1), match.group(2)
            if not doc.exists():
                dead.append(f"{where}: {match.group(1)} does not exist")
            elif section and section not in headings(doc):
                dead.append(f"{where}: {match.group(1)} has no section {section!r}")
    assert dead == []


def test_invariant_numbers_in_the_code_are_those_of_the_architecture_list():
    """Promise (issue 12): "invariant 9" in a comment or test means the ninth item of
    docs/architecture.md's list, which holds exactly ten."""
    text = prose(ROOT / "docs" / "architecture.md")
    section = text.split("\n## The ten invariants\n", 1)[1].split("\n## ", 1)[0]
    numbers = [int(n) for n in re.findall(r"^(\d+)\. ", section, re.M)]
    assert numbers == list(range(1, 11))
    assert "Policy changes are announced" in section.split("\n9. ", 1)[1].split("\n10. ")[0]
    cited = set()
    for file in _code_files():
        for group in re.findall(r"invariants? ((?:\d+(?:, | and )?)+)", file.read_text()):
            cited.update(int(n) for n in re.findall(r"\d+", group))
    assert cited and cited <= set(numbers)


def test_the_code_each_invariant_names_is_defined_where_the_docs_say():
    """Promise (issue 12): "`decide` and `reason_sql` in `mailprefs/domain/gate.py`" in
    the invariants list names functions and classes defined in that file, so a reader
    sent there finds what enforces the rule."""
    text = prose(ROOT / "docs" / "architecture.md")
    section = text.split("\n## The ten invariants\n", 1)[1].split("\n## ", 1)[0]
    section = re.sub(r"\s+", " ", section)
    cited = re.compile(
        r"((?:`[\w.]+`(?:, | and |, and )?)+),? "
        r"(?:there|in `((?:mailprefs|migrations)/[\w/.]+\.py)`)"
    )
    checked, missing, path = 0, [], None
    for match in cited.finditer(section):
        path = match.group(2) or path  # "there": the file named last
        source = (ROOT / path).read_text()
        for name in re.findall(r"`([\w.]+)`", match.group(1)):
            last = name.rsplit(".", 1)[-1]
            definition = rf"^\s*(?:def|class) {last}\b|^{last}\b[^=\n]*="
            checked += 1
            if not re.search(definition, source, re.M):
                missing.append(f"{name} in {path}")
    assert checked >= 25 and missing == []
