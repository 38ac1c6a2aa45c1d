"""Rewrites one ``## <name>`` section of docs/benchmarks.md, leaving the others as they are."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def write_section(name: str, lines: list[str], doc: Path = DOC) -> None:
    """Replace (or append) the section headed ``## name`` with ``lines``."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    section = "\n".join([f"## {name}", "", *lines, ""])
    start = text.find(f"\n## {name}\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[: start + 1] + section + ("" if end == -1 else "\n" + text[end + 1 :])
    doc.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
