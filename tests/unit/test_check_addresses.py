""".ci/check_addresses.py: tests, benchmarks and examples name only loopback addresses."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_addresses", ROOT / ".ci/check_addresses.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _checker()


def dotted(text: str) -> str:
    """Addresses are written 10~0~0~9 here, so that this file passes the check itself."""
    return text.replace("~", ".")


@pytest.mark.parametrize(
    "line,found",
    [
        ('asyncio.open_connection("10~255~255~1", 81)', ["10~255~255~1"]),
        ("resolver = 8~8~8~8", ["8~8~8~8"]),
        ("server at 192~168~1~20.", ["192~168~1~20"]),
        ("bind 172~16~0~1:8080 and 203~0~113~7", ["172~16~0~1", "203~0~113~7"]),
        ("shim serve --host 0~0~0~0", ["0~0~0~0"]),
        ("shim serve --host 0~0~0~0   # all interfaces: put TLS in front", []),
        ('HOST = "127~0~0~1"; also 127~1~2~3', []),
        ("uvicorn 0~30~6~1 and sqlite 3~45~1", []),
        ("version 10~2~3~4", []),
        ("v1~2~3~4", []),
        ("pip install foo==1~2~3~4", []),
        ("999~1~1~1 and 1~2~3", []),
        ("OID 1~3~6~1~4~1~311", []),
    ],
)
def test_addresses(line: str, found: list[str]) -> None:
    assert list(check.addresses(dotted(line))) == [dotted(a) for a in found]


def test_files_and_exit_status(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    source = dotted('HOST = "127~0~0~1"\nFAR = "10~0~0~9"\n')
    (tmp_path / "tests" / "test_x.py").write_text(source)
    (tmp_path / "README.md").write_text("Run on 127.0.0.1.\n")
    assert check.problems(["tests", "README.md", "docs"], tmp_path) == [
        dotted("tests/test_x.py:2: non-loopback address 10~0~0~9")
    ]
    assert check.main(["README.md"]) == 0


def test_this_repository_is_clean() -> None:
    assert check.problems(check.DEFAULT_PATHS, ROOT) == []
