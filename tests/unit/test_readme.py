"""Every README section an error message points to (``"... (see README: X)"``) exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sections_named_by_messages_exist() -> None:
    headings = {
        line.lstrip("#").strip().lower()
        for line in (ROOT / "README.md").read_text().splitlines()
        if line.startswith("#")
    }
    named = {
        m.group(1).strip().lower()
        for path in (ROOT / "shim").rglob("*.py")
        for m in re.finditer(r'\(see README: ([A-Za-z][A-Za-z -]+)\)"', path.read_text())
    }
    assert "rotating the master key" in named
    assert named <= headings, named - headings
