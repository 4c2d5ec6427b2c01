"""A short mutation check: do the tests notice when keyshim's guards are broken?

Each mutation below is a one-line (or one-statement) change that breaks a promise keyshim
makes: a key check that refuses every key, a local key sent to Keap, an XML guard turned off.
For each, this script copies ``shim/`` and ``tests/`` to a temporary directory, applies the
change there (never to the working tree), runs only the test files that should notice, and
reports which tests failed. A mutation no test catches is a hole in the tests.

    python3 tests/mutations/run.py            # every mutation
    python3 tests/mutations/run.py verify dtd # only those whose name contains a word given

Not collected by pytest (no ``test_`` prefix; ``tests/mutations`` is in norecursedirs). It
takes a few minutes; run it after changing a guard or the tests that watch one. Exit status 1
when some mutation survives.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest arguments: the tests that should notice
    fast: bool = True  # run with -m "not slow"


MUTATIONS = [
    Mutation(
        "verify: keys.verify refuses every key",
        "shim/access/keys.py",
        "    if record is None or not hmac.compare_digest(record.digest, digest(hmac_key, text)):",
        "    if True:",
        ("tests/rest/test_equivalence.py", "tests/serve/test_app.py"),
    ),
    Mutation(
        "auto-raw: the auto route forwards the raw body (the local key goes to Keap)",
        "shim/serve/call.py",
        "        forwarded = xmlrpc.replace_first_param(body, call, self.settings.placeholder)\n"
        "        try:",
        "        forwarded = body\n        try:",
        ("tests/rest/test_auto.py",),
    ),
    Mutation(
        "xmlrpc-raw: the xmlrpc route forwards the raw body",
        "shim/serve/call.py",
        "                forwarded = xmlrpc.replace_first_param(body, call, "
        "self.settings.placeholder)",
        "                forwarded = body",
        ("tests/serve/test_app.py", "tests/rest/test_equivalence.py"),
    ),
    Mutation(
        "dtd: the DTD and entity guards are off",
        "shim/xmlrpc.py",
        "target=tree, forbid_dtd=True, forbid_entities=True, forbid_external=True",
        "target=tree, forbid_dtd=False, forbid_entities=False, forbid_external=True",
        ("tests/serve/test_app.py",),
    ),
    Mutation(
        "dtd-only: the DTD guard is off (entities still refused)",
        "shim/xmlrpc.py",
        "target=tree, forbid_dtd=True, forbid_entities=True, forbid_external=True",
        "target=tree, forbid_dtd=False, forbid_entities=True, forbid_external=True",
        ("tests/serve/test_app.py",),
    ),
    Mutation(
        "method-name: the Service.method name check is off",
        "shim/serve/call.py",
        "            if not xmlrpc.is_method_name(call.method):",
        "            if False:",
        ("tests/serve/test_app.py",),
    ),
    Mutation(
        "ca-key: an unreadable CA key is taken as no CA (a new one replaces it)",
        "shim/tls/files.py",
        '    key_pem = _read(key_path, "the CA key")',
        "    try:\n"
        '        key_pem = _read(key_path, "the CA key")\n'
        "    except CliError:\n"
        "        return None",
        ("tests/tls/test_tls.py::test_refuses_to_replace_an_unreadable_ca_key",),
    ),
    Mutation(
        "status-code: status always exits 0",
        "shim/oauth/health.py",
        "    return max((SEVERITY[h.state] for h in healths), default=0)",
        "    return 0",
        ("tests/serve/test_no_secret_leaks.py",),
        fast=False,
    ),
]


def copy_tree(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", ".mypy_cache", ".pytest_cache", "*.pyc")
    for name in ("shim", "tests", "fixtures"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, target / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", target / "pyproject.toml")


def run(copy: Path, mutation: Mutation) -> tuple[bool, list[str], float]:
    """Apply ``mutation`` in ``copy``, run its tests, undo it: (caught, failed tests, seconds)."""
    path = copy / mutation.path
    original = path.read_text()
    count = original.count(mutation.old)
    if count != 1:
        raise SystemExit(f"{mutation.name}: the text to change occurs {count} times in {path}")
    path.write_text(original.replace(mutation.old, mutation.new))
    args = [sys.executable, "-m", "pytest", "-q", "-rfE", "-p", "no:cacheprovider"]
    if mutation.fast:
        args += ["-m", "not slow"]
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    started = time.monotonic()
    try:
        done = subprocess.run(
            [*args, *mutation.tests], cwd=copy, env=env, capture_output=True, text=True
        )
    finally:
        path.write_text(original)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, re.MULTILINE)
    caught = done.returncode != 0
    if caught and not failed:  # a collection error or an interrupted run: show its tail
        failed = ["(no test failed: " + done.stdout.strip().splitlines()[-1] + ")"]
    return caught, failed, time.monotonic() - started


def summary(failed: list[str]) -> str:
    """Per test file: how many failed, and the first test functions that did."""
    by_file: dict[str, list[str]] = {}
    for test in failed:
        path, _, name = test.removeprefix("tests/").partition("::")
        by_file.setdefault(path, []).append(name.split("[")[0])
    parts = []
    for path, names in by_file.items():
        distinct = sorted(set(names))
        more = f" +{len(distinct) - 2}" if len(distinct) > 2 else ""
        parts.append(f"{path} {len(names)} ({', '.join(distinct[:2])}{more})")
    return "; ".join(parts)


def main(words: list[str]) -> int:
    chosen = [m for m in MUTATIONS if not words or any(w in m.name for w in words)]
    survivors = 0
    with tempfile.TemporaryDirectory(prefix="keyshim-mutations-") as tmp:
        copy = Path(tmp)
        copy_tree(copy)
        print(f"{'mutation':<78} {'caught':<7} {'secs':>5}  by")
        for mutation in chosen:
            caught, failed, seconds = run(copy, mutation)
            survivors += not caught
            verdict = "yes" if caught else "NO"
            by = summary(failed) if caught else "nothing: " + " ".join(mutation.tests)
            print(f"{mutation.name:<78} {verdict:<7} {seconds:>5.0f}  {by}", flush=True)
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
