"""The shim command on PostgreSQL behaves exactly as on SQLite; ``shim store copy`` both ways.

The same command script runs against a SQLite file and a fresh PostgreSQL database; outputs
and exit codes must match once what is random or timed (key ids, keys, timestamps, where the
database is) is masked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from click.testing import CliRunner, Result

from shim.cli import cli
from shim.store.secrets import encode_master_key, generate_master_key

Invoke = Callable[..., Result]


def shim(db: str, secret: str, **env: str) -> Invoke:
    runner = CliRunner()
    base = {"SHIM_DB": db, "SHIM_SECRET_KEY": secret, **env}

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(cli, list(args), env=base, input=input, catch_exceptions=False)

    return invoke


def script(run: Invoke) -> list[tuple[str, int, str]]:
    """Every command a user runs day to day, with its mistakes."""
    steps: list[tuple[str, ...]] = [
        ("init",),
        ("account", "add", "prod", "--client-id", "cid", "--client-secret", "S-1"),
        ("account", "add", "prod", "--client-id", "cid", "--client-secret", "S-1"),
        ("account", "add", "sak", "--service-key", "KeapAK-S-2", "--route", "auto"),
        ("account", "import-tokens", "prod", "--access-token", "AT-3", "--refresh-token",
         "RT-4", "--expires-in", "24h"),
        ("account", "set", "prod", "--route", "auto"),
        ("account", "set", "nope", "--route", "auto"),
        ("account", "list"),
        ("account", "list", "--json"),
        ("key", "issue", "prod", "--label", "nightly", "--rate", "60/min", "--json"),
        ("key", "issue", "sak", "--label", "reports", "--allow", "DataService.*"),
        ("key", "issue", "nope", "--label", "x"),
        ("key", "list", "--json"),
        ("key", "list", "--account", "sak"),
        ("key", "revoke", "nokey12345"),
        ("status", "--json"),
        ("status",),
        ("usage", "--json"),
        ("usage", "--csv"),
        ("readiness", "--json"),
        ("refresh",),
    ]  # fmt: skip
    out = []
    for step in steps:
        result = run(*step)
        out.append((" ".join(step), result.exit_code, result.output))
    return out


def mask(text: str, db: str) -> str:
    text = text.replace(db, "DB")
    text = re.sub(r"postgresql://\S+", "DB", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "TIME", text)
    text = re.sub(r"shk_[0-9A-Za-z]+", "KEY", text)
    text = re.sub(r'"(id|prefix)": "[^"]*"', r'"\1": "X"', text)
    text = re.sub(r"key id:  \S+", "key id:  X", text)
    text = re.sub(r"^[0-9A-Za-z]{10}  ", "ID  ", text, flags=re.M)
    text = re.sub(r"(age|in) -?\d+(\.\d+)?[sdh]", r"\1 N", text)
    text = re.sub(r'"(access_token_expires_in|refresh_token_age)": [\d.-]+', r'"\1": N', text)
    return text


def test_every_command_matches_sqlite(tmp_path: Path, pg_url: str) -> None:
    secret = encode_master_key(generate_master_key())
    sqlite = str(tmp_path / "k.db")
    on_sqlite = script(shim(sqlite, secret))
    on_pg = script(shim(pg_url, secret))
    assert len(on_sqlite) == len(on_pg)
    for (step, code_s, out_s), (_, code_p, out_p) in zip(on_sqlite, on_pg, strict=True):
        assert code_p == code_s, (step, out_s, out_p)
        assert mask(out_p, pg_url) == mask(out_s, sqlite), step
    # The password never shows, wherever the URL is printed.
    password = urlsplit(pg_url).password
    assert password and not any(password in out for _, _, out in on_pg)


def test_wrong_master_key_is_refused_clearly(pg_url: str) -> None:
    secret = encode_master_key(generate_master_key())
    assert shim(pg_url, secret)("init").exit_code == 0
    wrong = shim(pg_url, encode_master_key(generate_master_key()))("account", "list")
    assert wrong.exit_code == 1
    assert "the master key does not open this database's secrets" in wrong.output


def test_password_from_pgpassword(pg_url: str) -> None:
    parts = urlsplit(pg_url)
    assert parts.password is not None
    netloc = f"{parts.username}@{parts.hostname}:{parts.port}"
    bare = urlunsplit(parts._replace(netloc=netloc))
    secret = encode_master_key(generate_master_key())
    assert shim(bare, secret, PGPASSWORD=parts.password)("init").exit_code == 0
    refused = shim(bare, secret, PGPASSWORD="wrong")("account", "list")
    assert refused.exit_code == 1 and "password authentication failed" in refused.output


def _installation(run: Invoke) -> dict[str, Any]:
    keys = json.loads(run("key", "list", "--json").output)
    accounts = json.loads(run("account", "list", "--json").output)
    usage = json.loads(run("usage", "--json").output)["rows"]
    return {"keys": keys, "accounts": accounts, "usage": usage}


def test_store_copy_both_ways_keeps_chains_and_keys(tmp_path: Path, pg_url: str) -> None:
    from shim.access import keys as key_checks
    from shim.serve.runtime import open_store
    from shim.settings import Settings

    secret = encode_master_key(generate_master_key())
    first, back = str(tmp_path / "first.db"), str(tmp_path / "back.db")
    run = shim(first, secret)
    run("init")
    run("account", "add", "prod", "--client-id", "cid", "--client-secret", "S-1")
    run("account", "import-tokens", "prod", "--access-token", "AT-3", "--refresh-token",
        "RT-4", "--expires-in", "24h")  # fmt: skip
    issued = json.loads(run("key", "issue", "prod", "--label", "n", "--json").output)
    before = _installation(run)

    copied = run("store", "copy", "--from", first, "--to", pg_url)
    assert copied.exit_code == 0, copied.output
    assert "1 accounts, 1 chains" in copied.output
    again = run("store", "copy", "--from", first, "--to", pg_url)
    assert again.exit_code == 1 and "already holds" in again.output
    assert _installation(shim(pg_url, secret)) == before
    back_out = run("store", "copy", "--from", pg_url, "--to", back)
    assert back_out.exit_code == 0, back_out.output
    assert _installation(shim(back, secret)) == before

    for db in (pg_url, back):  # the same chain (generation 1: never re-authorized), same key
        store = open_store(Settings.from_env({}, db=db, secret_key=secret))
        try:
            chain = store.get_chain("prod")
            assert chain is not None and chain.generation == 1
            assert (chain.access_token, chain.refresh_token) == ("AT-3", "RT-4")
            record = store.get_key(issued["id"])
            hmac_key = store.server_secret("key-hmac")
            assert key_checks.verify(record, hmac_key, issued["key"], 0.0).id == issued["id"]
            for table in ("chains", "accounts"):
                assert "RT-4" not in str(list(store.export_rows(table)))
        finally:
            store.close()


@pytest.mark.parametrize("source_kind", ["sqlite", "postgres"])
def test_store_copy_refuses_while_a_server_runs(
    tmp_path: Path, pg_url: str, source_kind: str
) -> None:
    from shim.serve.runtime import open_store
    from shim.settings import Settings
    from shim.store.copy import SERVING

    secret = encode_master_key(generate_master_key())
    source = str(tmp_path / "s.db") if source_kind == "sqlite" else pg_url
    target = pg_url if source_kind == "sqlite" else str(tmp_path / "t.db")
    run = shim(source, secret)
    run("init")
    server = open_store(Settings.from_env({}, db=source, secret_key=secret))
    held = server.try_lock(SERVING, "serve:1:x", shared=True)  # what shim serve holds
    try:
        refused = run("store", "copy", "--from", source, "--to", target)
        assert refused.exit_code == 1
        assert "a keyshim server is running on the source" in refused.output
    finally:
        assert held is not None
        held.release()
        server.close()
    assert run("store", "copy", "--from", source, "--to", target).exit_code == 0
