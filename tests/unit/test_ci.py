"""The CI script keeps the promises pyproject.toml makes."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ci_runs_the_store_tests_on_the_sqlite_utils_floor() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    floor = re.search(r'"sqlite-utils>=([\d.]+)"', pyproject)
    assert floor, "pyproject.toml names a sqlite-utils floor"
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"'sqlite-utils=={floor.group(1)}'" in ci
    assert re.search(r"PYTHONPATH=.*pytest.*tests/store", ci)
