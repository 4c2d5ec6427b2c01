#!/usr/bin/env python3
"""Fail when a test, benchmark, example or document names a non-loopback IPv4 address.

Tests reach only loopback; an address elsewhere (10.255.255.1 as "unroutable", a public DNS
server) makes a test depend on the network it runs in. Allowed: 127.0.0.0/8, and 0.0.0.0 on a
line that says what binding to all interfaces means ("all interfaces"). Dotted numbers that are
part of a longer dotted run (1.2.3.4.5), come after "v", "version" or a pin (==), or start with
0 (0.30.6.1, no destination) are versions, not addresses.

Usage: python3 .ci/check_addresses.py [PATH ...]   (default: tests bench README.md docs fixtures)
"""

from __future__ import annotations

import ipaddress
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

DEFAULT_PATHS = ("tests", "bench", "README.md", "docs", "fixtures")
SUFFIXES = {".py", ".md", ".txt", ".toml", ".cfg", ".ini", ".json", ".yaml", ".yml", ".sh"}
SUFFIXES |= {".php", ".js", ".xml", ".conf", ".rst", ".csv", ""}
_CANDIDATE = re.compile(r"(?<![\w.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\w.]*\d)")
_VERSION_BEFORE = re.compile(r"(?:\bv|version|==|>=|<=|~=|@)\s*$", re.IGNORECASE)
_BIND_ALL_NOTE = re.compile(r"all interfaces|every interface|bind-all", re.IGNORECASE)


def addresses(line: str) -> Iterator[str]:
    """The IPv4 addresses a line names that tests must not reach."""
    for m in _CANDIDATE.finditer(line):
        if any(int(part) > 255 for part in m.groups()):
            continue
        if _VERSION_BEFORE.search(line[: m.start()]):
            continue
        address = ipaddress.IPv4Address(m.group(0))
        if address.is_loopback:
            continue
        if m.group(1) == "0" and m.group(0) != "0.0.0.0":
            continue  # 0.x.y.z is no destination; such a string is a version (uvicorn 0.30.6.1)
        if address == ipaddress.IPv4Address("0.0.0.0") and _BIND_ALL_NOTE.search(line):
            continue
        yield m.group(0)


def files(paths: Iterable[str], root: Path) -> Iterator[Path]:
    for name in paths:
        path = root / name
        if path.is_file():
            yield path
        elif path.is_dir():
            for found in sorted(path.rglob("*")):
                if (
                    found.is_file()
                    and found.suffix in SUFFIXES
                    and "__pycache__" not in found.parts
                ):
                    yield found


def problems(paths: Iterable[str], root: Path) -> list[str]:
    out = []
    for path in files(paths, root):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for address in addresses(line):
                out.append(f"{path.relative_to(root)}:{number}: non-loopback address {address}")
    return out


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    found = problems(argv or DEFAULT_PATHS, root)
    for line in found:
        print(line, file=sys.stderr)
    if found:
        print(
            "tests, benchmarks and examples reach only loopback (127.0.0.0/8); "
            "0.0.0.0 only on a line that says it means all interfaces",
            file=sys.stderr,
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
