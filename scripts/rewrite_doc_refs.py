"""Points the code's references to the team's private documents at docs/ (issue 13, item 6).

    python scripts/rewrite_doc_refs.py [--check]

Line-local and idempotent: only the reference text of a line changes (no reflow), so it can be
re-run after merging branches that add new references. `--check` lists the lines it would
change and exits 1 if there are any. tests/test_doc_references.py then checks that every
reference resolves.
"""
from __future__ import annotations

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCANNED = ("jax_local", "configs", "tests", "benchmarks", "scripts", "launch.py", "README.md",
           "BENCHMARKS.md", "pyproject.toml")
SUFFIXES = {".py", ".md", ".sh", ".toml"}
SELF = pathlib.Path(__file__).resolve()
# The checker names the old documents in its own patterns and fixtures.
EXCLUDED = ("tests/test_doc_references.py",)

# Sentences that describe what the private spec said: reworded in place (exact text, one line).
SPECIFIC = [
    ("[decision] methods.md §5.2 writes the fix as \"module number/(L−1)\"; under convention B",
     "[decision] (docs/methods.md §5.2) a fix \"module number/(L−1)\" would not do: under convention B"),
    ("# methods.md §8.2 prints 7–30 / 31–32 and 11–47 / 48–49; the reference lists have one entry",
     "# docs/methods.md §8.2: not 7–30 / 31–32 and 11–47 / 48–49; the reference lists have one entry"),
    ("so the last auxiliary term reaches r = 1. methods.md",
     "so the last auxiliary term reaches r = 1 (docs/methods.md §5.2). One could"),
    ("  writes the fix as \"/(L−1)\", but under convention B",
     "  write the fix as \"/(L−1)\", but under convention B"),
    ("For ResNet-101 and ResNet-152, methods.md §8.2",
     "For ResNet-101 and ResNet-152 (docs/methods.md §8.2),"),
    ("  prints ranges one entry too long (7–30 / 31–32 and 11–47 / 48–49). The reference lists have 32",
     "  ranges one entry longer (7–30 / 31–32 and 11–47 / 48–49) would not fit: the reference lists have 32"),
    ("(methods.md's `lam.update`: `update` is a ConfigDict method)",
     "(docs/methods.md §8.2; not `lam.update`: `update` is a ConfigDict method)"),
    ("(`reference/methods.md` of the team's shared",
     "(`docs/methods.md`, written for this repository from the published"),
    ("InfoPro (results.md §3.1);", "InfoPro (Wang et al. 2021, with their Table 4);"),
    ("(`../shared/reference/results.md` §4.1, §3.1;", "(HPFF, ECCV 2024; Wang et al., ICLR 2021;"),
]

# Generic renames, applied in order; the look-behinds keep them idempotent.
GENERIC = [
    (re.compile(r"(?<![\w/.-])(?:\.\./shared/)?reference/methods\.md"), "docs/methods.md"),
    (re.compile(r"(?<![\w/.-])(?:\.\./shared/)?reference/jax_conventions\.md"), "docs/jax_notes.md"),
    (re.compile(r"(?<![\w/.-])(?:\.\./shared/)?DESIGN\.md"), "docs/design.md"),
    (re.compile(r"(?<![\w/.-])jax_conventions\.md"), "docs/jax_notes.md"),
    (re.compile(r"(?<![\w/.-])methods\.md"), "docs/methods.md"),
    (re.compile(r"(?<![\w/.-])conventions(?= §)"), "docs/jax_notes.md"),
]


def rewrite_line(line: str) -> str:
  for old, new in SPECIFIC:
    line = line.replace(old, new)
  for pattern, new in GENERIC:
    line = pattern.sub(new, line)
  return line


def files():
  for entry in SCANNED:
    path = ROOT / entry
    if path.is_file():
      yield path
    elif path.is_dir():
      for f in sorted(path.rglob("*")):
        if (f.is_file() and f.suffix in SUFFIXES and f.resolve() != SELF
            and "__pycache__" not in f.parts
            and f.relative_to(ROOT).as_posix() not in EXCLUDED):
          yield f


def main(argv) -> int:
  check = "--check" in argv
  changed = 0
  for path in files():
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    new_lines = [rewrite_line(line) for line in lines]
    for n, (a, b) in enumerate(zip(lines, new_lines), 1):
      if a != b:
        changed += 1
        print(f"{path.relative_to(ROOT)}:{n}: {b.strip()}")
    if not check and new_lines != lines:
      path.write_text("\n".join(new_lines), encoding="utf-8")
  print(f"{changed} line(s) {'to change' if check else 'changed'}", file=sys.stderr)
  return 1 if check and changed else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
