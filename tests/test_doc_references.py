"""Every section, quirk and document reference in the repository resolves inside docs/.

Pure text, no imports from jax_local. A line's references are read as follows:
- a document name (`docs/methods.md`, `docs/design.md`, `docs/jax_notes.md`) governs the "§x.y"
  tokens that follow it on the same line until a ";" or ")" closes the citation;
- any other "§x.y" means docs/methods.md (inside docs/, the document it is written in);
- "§x.y" must match a heading "## §x.y ..." (any level) of the governing document;
- "Qnn" must have a row "| Qnn | ..." in the quirk table of docs/methods.md;
- a document name that does not live under docs/ (the team's private methods.md, DESIGN.md,
  jax_conventions.md, results.md) is itself an error, and so are the "§" tokens it governs.
"""
from __future__ import annotations

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ("methods.md", "design.md", "jax_notes.md")
SCANNED = ("jax_local", "configs", "tests", "benchmarks", "scripts", "docs", "launch.py",
           "README.md", "BENCHMARKS.md", "pyproject.toml")
SUFFIXES = {".py", ".md", ".sh", ".toml", ".txt", ".cfg"}

# A mention of a document: an optional path, then one of the known names. "conventions §" is the
# old short form of jax_conventions.md.
DOC_RE = re.compile(r"(?P<path>[\w./-]*?)(?P<name>methods|DESIGN|design|jax_conventions|jax_notes"
                    r"|results)\.md|\bconventions(?= §)")
SECTION_RE = re.compile(r"§(\d+(?:\.\d+)*[a-z]?)")
QUIRK_RE = re.compile(r"\bQ(\d{1,2})\b")
HEADING_RE = re.compile(r"^#{1,6}\s+§(\d+(?:\.\d+)*[a-z]?)\b", re.M)
QUIRK_ROW_RE = re.compile(r"^\|\s*Q(\d{1,2})\s*\|", re.M)
CLOSERS = re.compile(r"[;)]")


def _sections(doc: str) -> set[str]:
  return set(HEADING_RE.findall((ROOT / "docs" / doc).read_text(encoding="utf-8")))


def _files():
  me = pathlib.Path(__file__).resolve()
  for entry in SCANNED:
    path = ROOT / entry
    if path.is_file():
      yield path
    elif path.is_dir():
      for f in sorted(path.rglob("*")):
        if (f.is_file() and f.suffix in SUFFIXES and f.resolve() != me
            and "__pycache__" not in f.parts):
          yield f


def _mentions(line: str):
  """[(start, end, doc or None)]: doc is the docs/ file named, None for a name outside docs/."""
  out = []
  for m in DOC_RE.finditer(line):
    name = m.group("name")
    path = (m.group("path") or "")
    while path.startswith(("./", "../")):
      path = path.split("/", 1)[1]
    doc = f"{name}.md" if name and path == "docs/" and f"{name}.md" in DOCS else None
    out.append((m.start(), m.end(), doc, m.group(0)))
  return out


def find_problems() -> list[str]:
  sections = {doc: _sections(doc) for doc in DOCS}
  quirks = set(QUIRK_ROW_RE.findall((ROOT / "docs" / "methods.md").read_text(encoding="utf-8")))
  problems = []
  for path in _files():
    rel = path.relative_to(ROOT).as_posix()
    own = path.name if rel.startswith("docs/") and path.name in DOCS else "methods.md"
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
      where = f"{rel}:{n}"
      mentions = _mentions(line)
      for _, _, doc, text in mentions:
        if doc is None:
          problems.append(f"{where}: {text!r} is not a document under docs/ "
                          f"(write docs/methods.md, docs/design.md or docs/jax_notes.md)")
      for m in SECTION_RE.finditer(line):
        governing = own
        for start, end, doc, text in mentions:
          if end <= m.start() and not CLOSERS.search(line, end, m.start()):
            governing = doc if doc else text
        if governing not in DOCS:
          problems.append(f"{where}: §{m.group(1)} of {governing!r}, which is not in docs/")
        elif m.group(1) not in sections[governing]:
          problems.append(f"{where}: §{m.group(1)} has no heading in docs/{governing}")
      for m in QUIRK_RE.finditer(line):
        if m.group(1) not in quirks:
          problems.append(f"{where}: quirk Q{m.group(1)} has no row in the docs/methods.md "
                          f"quirk table (§12)")
  return problems


def test_docs_exist_with_numbered_headings():
  for doc in DOCS:
    assert _sections(doc), f"docs/{doc} has no '## §x' headings"


def test_every_reference_resolves():
  problems = find_problems()
  assert not problems, (f"{len(problems)} dangling documentation reference(s):\n"
                        + "\n".join(problems))


def test_checker_catches_dangling_references(tmp_path, monkeypatch):
  """The checker itself: a bad section, an unknown quirk and an old document name are reported."""
  docs = tmp_path / "docs"
  docs.mkdir()
  (docs / "methods.md").write_text("## §1 A\n### §1.2 B\n| Q2 | x |\n", encoding="utf-8")
  (docs / "design.md").write_text("## §3 Plan\n", encoding="utf-8")
  (docs / "jax_notes.md").write_text("## §7 Memory\n", encoding="utf-8")
  (tmp_path / "README.md").write_text(
      "ok §1.2, Q2, docs/design.md §3; docs/jax_notes.md §7 (docs/design.md §3) §1\n"
      "bad §9.9 Q7 DESIGN.md §3 docs/design.md §4\n", encoding="utf-8")
  monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
  problems = find_problems()
  assert all(p.startswith("README.md:2:") for p in problems), problems
  assert len(problems) == 5, problems  # §9.9, Q7, DESIGN.md, its §3, docs/design.md §4
