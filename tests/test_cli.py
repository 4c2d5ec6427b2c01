"""The shim command through click's CliRunner: output, --json, and one-line errors."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from shim.cli import cli


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    env = {"SHIM_DB": str(tmp_path / "k.db"), "SHIM_SECRET_KEY": ""}

    def invoke(*args: str, ok: bool = True):  # type: ignore[no-untyped-def]
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    invoke("init")
    return invoke


def test_init_modes(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for name in ("k.db", "k.db.key"):
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode == 0o600, (name, oct(mode))
    assert "exists" in run("init").output  # idempotent


def test_accounts(run) -> None:  # type: ignore[no-untyped-def]
    run("account", "add", "prod", "--client-id", "cid", "--client-secret", "SECRET-1")
    run(
        "account",
        "add",
        "stage",
        "--service-key",
        "KeapAK-SECRET-2",
        "--xmlrpc-url",
        "http://127.0.0.1:9/crm/xmlrpc/v1",
    )
    run(
        "account",
        "import-tokens",
        "prod",
        "--access-token",
        "AT-SECRET-3",
        "--refresh-token",
        "RT-SECRET-4",
        "--expires-in",
        "24h",
    )
    out = run("account", "list", "--json").output
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["prod"]["kind"] == "oauth" and rows["prod"]["tokens"]["generation"] == 1
    assert rows["stage"]["kind"] == "service_key"
    assert rows["stage"]["xmlrpc_url"] == "http://127.0.0.1:9/crm/xmlrpc/v1"
    assert "SECRET" not in out
    assert "SECRET" not in run("account", "list").output


@pytest.mark.parametrize(
    "args,message",
    [
        (["account", "add", "x"], "either --client-id"),
        (["account", "add", "x", "--client-id", "a"], "both --client-id"),
        (
            [
                "account",
                "add",
                "x",
                "--client-id",
                "a",
                "--client-secret",
                "b",
                "--service-key",
                "k",
            ],
            "either",
        ),
        (["account", "add", "bad name", "--service-key", "k"], "account names"),
        (["account", "add", "x", "--service-key", "k", "--xmlrpc-url", "ftp://x"], "http(s)"),
        (
            [
                "account",
                "import-tokens",
                "nope",
                "--access-token",
                "a",
                "--refresh-token",
                "r",
                "--expires-in",
                "10",
            ],
            "no account",
        ),
        (["key", "issue", "nope", "--label", "x"], "no account"),
        (["key", "revoke", "nope"], "no key"),
        (
            [
                "account",
                "import-tokens",
                "x",
                "--access-token",
                "a",
                "--refresh-token",
                "r",
                "--expires-in",
                "soon",
            ],
            "not a duration",
        ),
    ],
)
def test_mistakes_are_one_line(run, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    result = run(*args, ok=False)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_keys(run) -> None:  # type: ignore[no-untyped-def]
    run("account", "add", "prod", "--service-key", "KeapAK-x")
    issued = json.loads(
        run(
            "key",
            "issue",
            "prod",
            "--label",
            "cron job",
            "--json",
            "--expires-in",
            "30d",
            "--allow",
            "ContactService.*",
        ).output
    )
    assert issued["key"].startswith("shk_") and issued["id"] in issued["key"]
    assert issued["allow"] == ["ContactService.*"] and issued["expires"]
    plain = run("key", "issue", "prod", "--label", "other").output
    assert "only time" in plain
    listing = run("key", "list", "--json").output
    assert issued["key"] not in listing
    assert {r["label"] for r in json.loads(listing)} == {"cron job", "other"}
    run("key", "revoke", issued["id"])
    states = {r["id"]: r["state"] for r in json.loads(run("key", "list", "--json").output)}
    assert states[issued["id"]] == "revoked"
    assert json.loads(run("key", "list", "--account", "nope", "--json").output) == []


def test_commands_need_init(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["account", "list"], env={"SHIM_DB": str(tmp_path / "none.db"), "SHIM_SECRET_KEY": ""}
    )
    assert result.exit_code == 1 and "shim init" in result.output


def test_every_command_has_help_with_an_example() -> None:
    import click

    def walk(cmd: click.Command, path: list[str]) -> list[list[str]]:
        out = [path]
        if isinstance(cmd, click.Group):
            for name, sub in cmd.commands.items():
                out += walk(sub, [*path, name])
        return out

    for path in walk(cli, []):
        result = CliRunner().invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, path
        cmd: click.Command = cli
        for name in path:
            assert isinstance(cmd, click.Group)
            cmd = cmd.commands[name]
        if not isinstance(cmd, click.Group):
            assert "Example" in result.output, path
