"""The shim command through click's CliRunner: output, --json, and one-line errors."""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from shim.cli import cli
from shim.models import TokenPair
from shim.serve.runtime import open_recovery
from shim.settings import Settings
from shim.store.recovery import RecoveredPair


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
        (
            [
                *["account", "import-tokens", "x", "--access-token", "a", "--refresh-token"],
                "",
                "--expires-in",
                "1h",
            ],
            "cannot be empty",
        ),
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
                "0",
            ],
            "must be positive",
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
    run("account", "add", "prod", "--service-key", "KeapAK-0123456789ab")
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
    run("account", "add", "prod", "--service-key", "KeapAK-0123456789ab")
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

    run("account", "add", "prod", "--service-key", "KeapAK-0123456789ab")
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
    assert "via_rest" in csv_out[0].split(",")
    assert len(csv_out) == 4
    assert any(",DataService.query,Product,1," in line for line in csv_out)
    assert "DataService.query Product" in run("usage").output
    assert "ContactService.add" in run("usage", "--since", "2020-01-01").output
    assert "--since" in run("usage", "--since", "whenever", ok=False).output


def _read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Open every connection read-only, as SQLite does for a file the user may not write
    (chmod alone does not stop root, who runs some CI)."""
    from shim.store import sqlite as sqlite_store

    real = sqlite_store._connect

    def connect(path: str, timeout: float):  # type: ignore[no-untyped-def]
        conn = real(f"file:{path}?mode=ro", timeout)
        return conn

    monkeypatch.setattr(sqlite_store, "_connect", connect)
    monkeypatch.setattr(
        sqlite_store.sqlite3,
        "connect",
        functools.partial(sqlite3.connect, uri=True),
    )


def test_read_only_database_reads_and_refuses_writes_in_one_line(  # type: ignore[no-untyped-def]
    run, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("account", "add", "prod", "--client-id", "cid", "--client-secret", "s")
    _read_only(monkeypatch)
    assert "prod" in run("account", "list").output  # reading never migrates
    result = run("account", "add", "p2", "--client-id", "c", "--client-secret", "s", ok=False)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    assert "shim: error: the database" in result.output and "read-only" in result.output


def test_corrupt_and_busy_database_are_one_line(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "k.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    from shim.store.sqlite import explain_error

    try:
        sqlite3.connect(db, timeout=0, isolation_level=None).execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        assert "locked by another process" in explain_error(exc, str(db))
    else:
        raise AssertionError("expected a busy database")
    conn.execute("ROLLBACK")
    conn.close()
    for name in ("k.db-wal", "k.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    result = run("account", "list", ok=False)
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "not a keyshim database or is damaged" in result.output


def test_key_rate_keeps_its_unit(run) -> None:  # type: ignore[no-untyped-def]
    run("account", "add", "prod", "--service-key", "KeapAK-0123456789ab")
    out = run("key", "issue", "prod", "--label", "hourly", "--rate", "10/h", "--json").output
    issued = json.loads(out)
    assert issued["rate"] == "10/h" and issued["rate_per_min"] is None
    listed = json.loads(run("key", "list", "--json").output)
    assert listed[0]["rate"] == "10/h"


def test_service_key_form_is_checked(run) -> None:  # type: ignore[no-untyped-def]
    result = run("account", "add", "s", "--service-key", "notakey", ok=False)
    assert result.exit_code == 1 and "KeapAK-" in result.output
    assert "Traceback" not in result.output


def test_account_set_changes_credentials_and_urls(run) -> None:  # type: ignore[no-untyped-def]
    run("account", "add", "prod", "--client-id", "cid", "--client-secret", "s1")
    run("account", "add", "sak", "--service-key", "KeapAK-0123456789ab")
    out = run(
        "account", "set", "prod", "--client-id", "cid2", "--client-secret", "s2",
        "--xmlrpc-url", "http://127.0.0.1:9/crm/xmlrpc/v1", "--token-url", "http://127.0.0.1:9/t",
        "--json",
    ).output  # fmt: skip
    shown = json.loads(out)
    assert shown["client_id"] == "cid2" and shown["token_url"] == "http://127.0.0.1:9/t"
    assert shown["xmlrpc_url"] == "http://127.0.0.1:9/crm/xmlrpc/v1" and "s2" not in out
    run("account", "set", "sak", "--service-key", "KeapAK-abcdefabcdef")
    for args, message in (
        (["sak", "--client-secret", "x"], "does not apply"),
        (["prod", "--service-key", "KeapAK-abcdefabcdef"], "does not apply"),
        (["prod", "--service-key", "nope"], "KeapAK-"),
        (["prod", "--token-url", "ftp://x"], "http(s)"),
        (["prod"], "nothing to change"),
        (["nope", "--route", "rest"], "no account"),
    ):
        result = run("account", "set", *args, ok=False)
        assert result.exit_code == 1 and message in result.output, (args, result.output)


def test_account_remove(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("account", "add", "prod", "--service-key", "KeapAK-0123456789ab")
    run("key", "issue", "prod", "--label", "x")
    assert run("account", "remove", "prod", ok=False).exit_code == 1  # asks; no answer aborts
    # A pair kept aside for it goes too: it must never apply to a new account of that name.
    recovery = open_recovery(Settings.from_env({"SHIM_DB": str(tmp_path / "k.db")}))
    recovery.write(RecoveredPair("prod", TokenPair("AT-x", "RT-x", 1.0), 1, 1.0))
    gone = json.loads(run("account", "remove", "prod", "--yes", "--json").output)
    assert gone == {"name": "prod", "removed": True, "keys_removed": 1}
    assert recovery.accounts() == []
    assert json.loads(run("account", "list", "--json").output) == []
    assert json.loads(run("key", "list", "--json").output) == []
    assert "no account" in run("account", "remove", "prod", "--yes", ok=False).output


def test_secrets_from_stdin_or_environment(tmp_path: Path) -> None:
    """Secrets on the command line show in ps and shell history."""
    runner = CliRunner()
    env = {"SHIM_DB": str(tmp_path / "k.db"), "SHIM_SECRET_KEY": ""}

    def shim(*args: str, input: str | None = None, **extra: str):  # type: ignore[no-untyped-def]
        return runner.invoke(cli, list(args), env={**env, **extra}, input=input)

    assert shim("init").exit_code == 0
    added = shim(
        "account", "add", "prod", "--client-id", "cid", "--client-secret", "-", input="S1\n"
    )
    assert added.exit_code == 0, added.output
    added = shim("account", "add", "sak", SHIM_SERVICE_KEY="KeapAK-0123456789ab")
    assert added.exit_code == 0, added.output
    stored = shim(
        "account", "import-tokens", "prod", "--expires-in", "1h", "--refresh-token", "-",
        input="RT-1\n", SHIM_ACCESS_TOKEN="AT-1",
    )  # fmt: skip
    assert stored.exit_code == 0, stored.output
    both = shim(
        "account", "import-tokens", "prod", "--expires-in", "1h",
        "--access-token", "-", "--refresh-token", "-", input="a\nb\n",
    )  # fmt: skip
    assert both.exit_code != 0 and "only one secret" in both.output
    from shim.serve.runtime import open_store
    from shim.settings import Settings

    with open_store(Settings.from_env(env)) as store:
        prod = store.get_account("prod")
        assert prod is not None and prod.client_secret == "S1"
        sak = store.get_account("sak")
        assert sak is not None and sak.service_key == "KeapAK-0123456789ab"
        chain = store.get_chain("prod")
        assert chain is not None and (chain.access_token, chain.refresh_token) == ("AT-1", "RT-1")


def test_simulator_urls_give_a_rest_url_on_the_same_host(run) -> None:  # type: ignore[no-untyped-def]
    from shim.simulator import SimConfig, Simulator, describe

    urls = describe(Simulator(SimConfig()), "http://127.0.0.1:8780")
    assert urls["rest_url"] == "http://127.0.0.1:8780/crm/rest/v2"
    out = run("account", "add", "sim", "--service-key", urls["service_key"],
              "--xmlrpc-url", urls["xmlrpc_url"]).output  # fmt: skip
    assert "REST v2 at http://127.0.0.1:8780/crm/rest/v2" in out
    (row,) = json.loads(run("account", "list", "--json").output)
    assert row["rest_url"] == "http://127.0.0.1:8780/crm/rest/v2"


@pytest.mark.parametrize("command", [["serve"], ["simulator"]])
def test_port_in_use_is_one_line_before_any_startup_work(run, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run(*command, "--host", "127.0.0.1", "--port", port, ok=False)
    assert result.exit_code == 1
    assert result.output == (
        f"shim: error: port {port} on 127.0.0.1 is already in use; pick another with --port "
        "(or stop what is listening there)\n"
    )


def test_db_option_after_the_subcommand(tmp_path: Path) -> None:
    runner = CliRunner()
    db = str(tmp_path / "after.db")
    env = {"SHIM_DB": str(tmp_path / "elsewhere.db"), "SHIM_SECRET_KEY": ""}
    result = runner.invoke(cli, ["init", "--db", db], env=env)
    assert result.exit_code == 0 and f"database: {db}" in result.output, result.output
    result = runner.invoke(
        cli, ["account", "add", "p", "--service-key", "KeapAK-0123456789ab", "--db", db], env=env
    )
    assert result.exit_code == 0, result.output
    listed = runner.invoke(cli, ["account", "list", "--json", "--db", db], env=env)
    assert [r["name"] for r in json.loads(listed.output)] == ["p"]
    assert not (tmp_path / "elsewhere.db").exists()


def test_allow_warns_about_unknown_methods_and_names_the_closest(run) -> None:  # type: ignore[no-untyped-def]
    run("account", "add", "prod", "--service-key", "KeapAK-0123456789ab")
    result = run(
        "key", "issue", "prod", "--label", "x", "--allow", "ContactService.laod",
        "--allow", "DataService.*", "--allow", "ContactServce.*",
    )  # fmt: skip
    lines = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert lines == [
        "warning: --allow 'ContactService.laod' matches no legacy Keap method; "
        "did you mean 'ContactService.load'?",
        "warning: --allow 'ContactServce.*' matches no legacy Keap method; "
        "did you mean 'ContactService.*'?",
    ]
    quiet = run("key", "issue", "prod", "--label", "y", "--allow", "DataService.query").output
    assert "warning" not in quiet


def test_key_revoke_takes_the_prefix_key_list_shows(run) -> None:  # type: ignore[no-untyped-def]
    run("account", "add", "prod", "--service-key", "KeapAK-0123456789ab")
    first = json.loads(run("key", "issue", "prod", "--label", "a", "--json").output)
    second = json.loads(run("key", "issue", "prod", "--label", "b", "--json").output)
    assert first["prefix"].startswith("shk_")
    assert first["prefix"] in run("key", "list").output
    run("key", "revoke", first["prefix"])
    run("key", "revoke", second["key"])  # the whole key works too
    states = {r["id"]: r["state"] for r in json.loads(run("key", "list", "--json").output)}
    assert states == {first["id"]: "revoked", second["id"]: "revoked"}


def test_account_set_moves_the_rest_url_with_the_xmlrpc_host(run) -> None:  # type: ignore[no-untyped-def]
    run("account", "add", "sim", "--service-key", "KeapAK-0123456789ab")
    out = run("account", "set", "sim", "--xmlrpc-url", "http://127.0.0.1:8781/crm/xmlrpc/v1").output
    assert "REST v2 at http://127.0.0.1:8781/crm/rest/v2" in out
    run("account", "set", "sim", "--rest-url", "http://127.0.0.1:9/custom/rest")
    out = run("account", "set", "sim", "--xmlrpc-url", "http://127.0.0.1:8782/crm/xmlrpc/v1").output
    assert "REST v2 at http://127.0.0.1:9/custom/rest" in out  # chosen by hand: left alone


def test_status_shows_the_persisted_count_of_dropped_audit_records(  # type: ignore[no-untyped-def]
    run, tmp_path: Path
) -> None:
    from shim.serve.runtime import open_store
    from shim.settings import Settings

    assert "audit" not in run("status").output
    store = open_store(Settings.from_env({"SHIM_DB": str(tmp_path / "k.db")}))
    try:
        store.add_audit_dropped(5)
    finally:
        store.close()
    assert "audit: 5 call record(s) dropped so far" in run("status").output
    as_json = run("status", "--json")
    assert as_json.stdout.strip() == "[]"
    assert "shim: warning: audit: 5 call record(s) dropped" in as_json.stderr
