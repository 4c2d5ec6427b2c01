"""A master key that does not match the database is refused by every command, before any write.

The database holds the key's check value (made with the first sealed value); a command run with
another key (``SHIM_SECRET_KEY`` or the key file) must stop with one ``shim: error:`` line and
leave the database as it was. ``shim init`` on a database whose key file went missing must not
make a new key.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shim.cli import cli
from shim.store.secrets import encode_master_key, generate_master_key

ROOT = Path(__file__).resolve().parents[2]
WRONG = "the master key does not open this database's secrets"

COMMANDS = [
    ["account", "add", "other", "--client-id", "cid", "--client-secret", "S-2"],
    ["key", "issue", "prod", "--label", "x"],
    ["status"],
    ["account", "list"],
    ["init"],
]


@pytest.fixture(autouse=True)
def no_reload_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process commands: a wrong key is not a rotation in progress, no need to wait 2 s."""
    monkeypatch.setattr("shim.store.sqlite.RELOAD_TRIES", 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "d" / "k.db")
    return str(request.getfixturevalue("pg_url"))


def key() -> str:
    return encode_master_key(generate_master_key())


def invoke(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def snapshot(env: dict[str, str]) -> tuple[str, str]:
    return (
        invoke(env, "account", "list", "--json").output,
        invoke(env, "key", "list", "--json").output,
    )


@pytest.mark.parametrize("source", ["env", "key file"])
def test_every_command_refuses_a_wrong_key_before_writing(
    db: str, tmp_path: Path, source: str
) -> None:
    good = {"SHIM_DB": db, "SHIM_SECRET_KEY": key(), "SHIM_KEY_FILE": ""}
    assert invoke(good, "init").exit_code == 0
    added = invoke(good, "account", "add", "prod", "--client-id", "c", "--client-secret", "S-1")
    assert added.exit_code == 0, added.output
    assert invoke(good, "key", "issue", "prod", "--label", "one").exit_code == 0
    before = snapshot(good)

    if source == "env":
        bad = {"SHIM_DB": db, "SHIM_SECRET_KEY": key(), "SHIM_KEY_FILE": ""}
    else:
        wrong_file = tmp_path / "wrong.key"
        wrong_file.write_text(key() + "\n")
        wrong_file.chmod(0o600)
        bad = {"SHIM_DB": db, "SHIM_SECRET_KEY": "", "SHIM_KEY_FILE": str(wrong_file)}
    for args in COMMANDS:
        result = invoke(bad, *args)
        assert result.exit_code == 1, (args, result.output)
        lines = result.output.strip().splitlines()
        assert lines == [f"shim: error: {WRONG} (wrong SHIM_SECRET_KEY or key file?)"], args
    assert snapshot(good) == before


@pytest.mark.slow
def test_serve_refuses_a_wrong_key_before_it_listens(db: str) -> None:
    """``shim serve`` as a real process: one ``shim: error:`` line, nothing written."""
    good = {"SHIM_DB": db, "SHIM_SECRET_KEY": key(), "SHIM_KEY_FILE": ""}
    assert invoke(good, "init").exit_code == 0
    added = invoke(good, "account", "add", "prod", "--client-id", "c", "--client-secret", "S-1")
    assert added.exit_code == 0, added.output
    before = snapshot(good)
    bad = {**good, "SHIM_SECRET_KEY": key()}
    done = subprocess.run(
        [sys.executable, "-m", "shim", "serve", "--port", "0"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **bad},
        capture_output=True,
        timeout=60,
    )
    assert done.returncode != 0
    errors = [line for line in done.stderr.decode().splitlines() if "error" in line]
    assert errors == [f"shim: error: {WRONG} (wrong SHIM_SECRET_KEY or key file?)"], done.stderr
    assert snapshot(good) == before


def test_init_without_the_key_file_of_an_existing_database_refuses(db: str, tmp_path: Path) -> None:
    key_file = tmp_path / "keyshim.key"
    env = {"SHIM_DB": db, "SHIM_SECRET_KEY": "", "SHIM_KEY_FILE": str(key_file)}
    assert invoke(env, "init").exit_code == 0
    added = invoke(env, "account", "add", "prod", "--client-id", "c", "--client-secret", "S-1")
    assert added.exit_code == 0, added.output
    before = snapshot(env)
    original = key_file.read_text()
    key_file.unlink()

    result = invoke(env, "init")
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert line.startswith("shim: error: ") and "key file" in line and "is missing" in line
    assert not key_file.exists()  # no new key was made

    key_file.write_text(original)
    key_file.chmod(0o600)
    assert snapshot(env) == before
    assert invoke(env, "init").exit_code == 0  # with its key back, init is a no-op again
