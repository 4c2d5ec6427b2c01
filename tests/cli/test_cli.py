"""The shim command through click's CliRunner: output, --json, and one-line errors."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from shim.cli.commands import cli


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


def test_key_rotate_with_overlap(run) -> None:  # type: ignore[no-untyped-def]
    run("account", "add", "prod", "--service-key", "KeapAK-x")
    old = json.loads(
        run(
            "key",
            "issue",
            "prod",
            "--label",
            "sync",
            "--allow",
            "DataService.*",
            "--rate",
            "30/min",
            "--json",
        ).output
    )
    new = json.loads(run("key", "rotate", old["id"], "--overlap", "7d", "--json").output)
    assert new["id"] != old["id"] and new["key"] != old["key"]
    assert (new["label"], new["allow"], new["rate_per_min"]) == ("sync", ["DataService.*"], 30)
    rows = {r["id"]: r for r in json.loads(run("key", "list", "--json").output)}
    assert rows[old["id"]]["state"] == "active" and rows[old["id"]]["revoked"]  # in 7 days
    run("key", "rotate", new["id"])  # no overlap: the old one stops now
    rows = {r["id"]: r for r in json.loads(run("key", "list", "--json").output)}
    assert rows[new["id"]]["state"] == "revoked"
    assert "revoked" in run("key", "rotate", new["id"], ok=False).output


def test_rotate_master_key_keeps_everything_usable(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from shim.serve.runtime import load_master_key, open_store
    from shim.settings import Settings

    run("account", "add", "prod", "--client-id", "cid", "--client-secret", "SECRET-9")
    run(
        "account",
        "import-tokens",
        "prod",
        "--access-token",
        "AT-1",
        "--refresh-token",
        "RT-1",
        "--expires-in",
        "1h",
    )
    issued = json.loads(run("key", "issue", "prod", "--label", "x", "--json").output)
    settings = Settings.from_env({"SHIM_DB": str(tmp_path / "k.db")})
    before = load_master_key(settings)
    out = run("rotate-master-key").output
    assert "re-encrypted" in out
    assert load_master_key(settings) != before
    assert stat.S_IMODE(os.stat(settings.key_file).st_mode) == 0o600
    store = open_store(settings)
    try:
        account = store.get_account("prod")
        assert account is not None and account.client_secret == "SECRET-9"
        chain = store.get_chain("prod")
        assert chain is not None and chain.refresh_token == "RT-1"
        # local keys survive: their HMAC secret was re-encrypted, not re-derived
        from shim.access import keys

        record = store.get_key(issued["id"])
        keys.verify(record, store.server_secret("key-hmac"), issued["key"], now=0)
    finally:
        store.close()


def test_usage_report(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import dataclasses
    import time

    from shim.models import CallRecord
    from shim.serve.runtime import open_store
    from shim.settings import Settings

    run("account", "add", "prod", "--service-key", "KeapAK-x")
    issued = json.loads(run("key", "issue", "prod", "--label", "nightly", "--json").output)
    store = open_store(Settings.from_env({"SHIM_DB": str(tmp_path / "k.db")}))
    now = time.time()
    records = [
        CallRecord(now - 10, f"r{i}", issued["id"], "prod", method, outcome, 200, 5.0, 100, 200)
        for i, (method, outcome) in enumerate(
            [("ContactService.add", "ok")] * 3
            + [("ContactService.load", "RecordNotFound")]
            + [("DataService.query", "ok")]
        )
    ] + [CallRecord(now - 40 * 86400, "old", issued["id"], "prod", "X.y", "ok", 200, 1, 1, 1)]
    records[-2] = dataclasses.replace(records[-2], table_name="Product")
    store.record_calls(records)
    store.close()
    data = json.loads(run("usage", "--json").output)
    rows = {r["method"]: r for r in data["rows"]}
    assert rows["ContactService.add"]["calls"] == 3
    assert rows["ContactService.load"]["faults"] == 1
    assert rows["ContactService.load"]["fault_tags"] == {"RecordNotFound": 1}
    assert rows["ContactService.add"]["label"] == "nightly"
    assert "X.y" not in rows  # older than the default 30 days
    assert "X.y" in {
        r["method"] for r in json.loads(run("usage", "--since", "60d", "--json").output)["rows"]
    }
    assert rows["DataService.query"]["table_name"] == "Product"
    assert rows["ContactService.add"]["table_name"] is None
    csv_out = run("usage", "--csv").output.splitlines()
    assert csv_out[0].startswith("key_id,label,account,method,table_name,calls")
    assert len(csv_out) == 4
    assert any(",DataService.query,Product,1," in line for line in csv_out)
    assert "DataService.query Product" in run("usage").output
    assert "ContactService.add" in run("usage", "--since", "2020-01-01").output
    assert "--since" in run("usage", "--since", "whenever", ok=False).output
