"""The REST translation in detail: the table and its generated doc, scan limits, the
read-merge-write guard, streamed files, readiness figures, and the CLI around routes."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from shim import xmlrpc
from shim.cli import cli
from shim.models import CallRecord
from shim.rest import listing, readiness
from shim.rest.table import TABLE, TRANSLATIONS, document, fidelity, lookup
from shim.settings import Settings
from shim.store.sqlite import SqliteStore
from tests.rest.test_auto import Auto

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.anyio


def test_committed_doc_is_generated_from_the_table() -> None:
    committed = (ROOT / "docs" / "translation.md").read_text()
    assert committed == document(), "run: python -m shim.rest.table > docs/translation.md"


def test_table_is_consistent() -> None:
    assert len(TABLE) == len(TRANSLATIONS)
    for t in TRANSLATIONS:
        assert t.fidelity in ("exact", "approximate")
        assert t.fidelity == "exact" or t.notes, f"{t.method}: say what is approximate"
        assert not (t.read_only and not t.repeatable)
        assert f"`{t.method}`" in document()
    assert lookup("DataService.query", ["k", "CProgram", 1, 0, {}, ["Id"]]) is None
    assert lookup("DataService.query", ["k", "Contact", 1, 0, {}, ["Id"]]) is not None
    assert lookup("DataService.query", ["k", "NoSuchTable", 1, 0, {}, ["Id"]]) is not None
    assert lookup("FileService.uploadFile", ["k", "a.txt", "x"]) is not None
    assert lookup("DataService.getAppSetting", ["k", "Order", "x"]) is None
    assert fidelity("InvoiceService.validateCreditCard") == "no"


def test_readiness_figures() -> None:
    rows = [
        {"key_id": "k1", "label": "sync", "account": "prod", "method": "ContactService.load",
         "calls": 60},
        {"key_id": "k1", "label": "sync", "account": "prod", "method": "ContactService.merge",
         "calls": 20},
        {"key_id": "k1", "label": "sync", "account": "prod",
         "method": "InvoiceService.validateCreditCard", "calls": 20},
        {"key_id": "k2", "label": "report", "account": "prod", "method": "DataService.query",
         "calls": 100},
        {"key_id": None, "label": None, "account": None, "method": "DataService.echo",
         "calls": 999},
    ]  # fmt: skip
    data = readiness.report(rows)
    k1, k2 = data["keys"]  # equal calls: by key id
    assert (k1["key_id"], k1["calls"], k1["share"], k1["exact_share"]) == ("k1", 100, 0.8, 0.2)
    assert [m["translation"] for m in k1["methods"]] == ["approximate", "exact", "no"]
    assert (k2["share"], k2["exact_share"]) == (1.0, 0.0)
    assert data["team"] == {
        "calls": 200, "exact": 20, "approximate": 160, "no": 20, "share": 0.9,
        "exact_share": 0.1,
    }  # fmt: skip
    text = "\n".join(readiness.lines(data))
    assert "team: 200 calls, 90% would keep working" in text


@pytest.fixture
async def rest(settings: Settings, store: SqliteStore) -> AsyncIterator[Auto]:
    a = Auto(replace(settings), store, "rest")
    await a.app.startup()
    yield a
    await a.client.aclose()
    await a.app.shutdown()


async def _contacts(rest: Auto, n: int) -> None:
    for i in range(n):
        await rest.call("ContactService.add", {"LastName": f"N{i}", "Email": f"{i}@x.io"})


async def test_scans_are_bounded(rest: Auto, monkeypatch: pytest.MonkeyPatch) -> None:
    await _contacts(rest, 5)
    monkeypatch.setattr(listing, "SCAN_LIMIT", 3)
    monkeypatch.setattr(listing, "REST_PAGE", 2)
    from shim.rest import contacts

    monkeypatch.setattr(contacts, "SCAN_LIMIT", 3)
    # REST filters exactly: no scan, any size
    assert await rest.call("DataService.query", "Contact", 10, 0, {"LastName": "N%"}, ["Id"])
    # a suffix match REST cannot express: keyshim would read all 5 > 3, so it refuses
    fault = await rest.call("DataService.query", "Contact", 10, 0, {"LastName": "%3"}, ["Id"])
    assert isinstance(fault, xmlrpc.Fault) and fault.code == 112
    assert "more than 3 records" in fault.string and "LastName LIKE" in fault.string
    fault = await rest.call("DataService.query", "Contact", 10, 0, {}, ["Id"], "LastName", True)
    assert isinstance(fault, xmlrpc.Fault) and "ordered by LastName" in fault.string
    # narrowed by a REST filter first, the same LIKE stays within the limit
    query = {"LastName": "%3", "Email": "3@x.io"}
    assert await rest.call("DataService.query", "Contact", 10, 0, query, ["Id"]) == [{"Id": 4}]


async def test_contact_group_assign_needs_a_contact_or_tag(rest: Auto) -> None:
    fault = await rest.call("DataService.query", "ContactGroupAssign", 10, 0, {}, ["GroupId"])
    assert isinstance(fault, xmlrpc.Fault) and fault.code == 112
    assert "exact ContactId or GroupId" in fault.string


async def test_fields_rest_cannot_write_or_filter(rest: Auto) -> None:
    await _contacts(rest, 1)
    fault = await rest.call("ContactService.update", 1, {"Password": "x"})
    assert isinstance(fault, xmlrpc.Fault) and fault.code == 112 and "Password" in fault.string
    assert await rest.call("ContactService.load", 1, ["Id", "Password"]) == {"Id": 1}
    fault = await rest.call("DataService.query", "Contact", 5, 0, {"Leadsource": "%x"}, ["Id"])
    assert isinstance(fault, xmlrpc.Fault) and fault.code == 112 and "Leadsource" in fault.string


async def test_read_merge_write_retries_a_lost_change(rest: Auto) -> None:
    """Another client overwrites the emails between keyshim's PATCH and its re-check: the
    change is detected and written again (REST has no ETag; this is what can be done)."""
    await rest.call("ContactService.add", {"FirstName": "A", "Email": "a@x.io"})
    inner = rest.wire.inner.handle_async_request
    patches = 0

    async def racing(request: httpx.Request) -> httpx.Response:
        nonlocal patches
        response = await inner(request)
        if request.method == "PATCH":
            patches += 1
            if patches == 1:  # someone else's read-modify-write lands right after ours
                rest.sim.db.tables["Contact"][1]["EmailAddress2"] = None
        return response

    rest.wire.inner.handle_async_request = racing  # type: ignore[method-assign]
    assert await rest.call("ContactService.update", 1, {"EmailAddress2": "b@x.io"}) == 1
    assert patches == 2
    assert rest.sim.db.tables["Contact"][1]["EmailAddress2"] == "b@x.io"


async def test_concurrent_updates_through_keyshim_do_not_lose_each_other(rest: Auto) -> None:
    await rest.call("ContactService.add", {"FirstName": "A", "Email": "a@x.io"})
    changes = [{"EmailAddress2": "two@x.io"}, {"EmailAddress3": "three@x.io"}]
    changes += [{"Phone1": "1"}, {"Phone2": "2"}, {"Phone3": "3"}]
    results = await asyncio.gather(*(rest.call("ContactService.update", 1, c) for c in changes))
    assert results == [1] * len(changes)
    fields = ["Email", "EmailAddress2", "EmailAddress3", "Phone1", "Phone2", "Phone3"]
    assert await rest.call("ContactService.load", 1, fields) == {
        "Email": "a@x.io", "EmailAddress2": "two@x.io", "EmailAddress3": "three@x.io",
        "Phone1": "1", "Phone2": "2", "Phone3": "3",
    }  # fmt: skip


async def test_get_file_is_streamed_with_its_length(rest: Auto) -> None:
    await _contacts(rest, 1)
    data = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MB, not a multiple of 3
    file_id = rest.sim.add_file(1, "big.bin", data)
    body = xmlrpc.dumps_call("FileService.getFile", [rest.key, file_id])
    async with rest.client.stream("POST", "/api/xmlrpc", content=body) as response:
        length = int(response.headers["content-length"])
        received = await response.aread()
    assert len(received) == length
    assert base64.b64decode(xmlrpc.parse_response(received)) == data  # type: ignore[arg-type]


async def test_base64_is_encoded_chunk_by_chunk() -> None:
    """Each REST chunk is encoded as it comes (3-byte remainders carried over), so a big file
    is never held whole, raw or encoded."""
    from shim.rest.files import Streamed

    data = bytes(range(256)) * 1000
    sizes = [1, 2, 3, 4, 1000, 65537, 7, 100_000, 5]
    pieces, start = [], 0
    for size in sizes:
        pieces.append(data[start : start + size])
        start += size
    pieces.append(data[start:])

    class Fake:
        closed = False

        async def iter_decoded(self) -> AsyncIterator[bytes]:
            for piece in pieces:
                yield piece

        async def aclose(self) -> None:
            Fake.closed = True

    out = [chunk async for chunk in Streamed(Fake()).base64_chunks()]  # type: ignore[arg-type]
    assert b"".join(out) == base64.b64encode(data) and Fake.closed
    assert len(out) >= len(sizes) - 2
    assert max(map(len, out)) <= 4 * (max(sizes) + 2) // 3 + 4


async def test_auto_fallback_shows_in_status_and_logs(
    settings: Settings, store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    auto = Auto(replace(settings), store, "auto")
    await auto.app.startup()
    try:
        await auto.call("ContactService.add", {"FirstName": "A", "Email": "a@x.io"})
        auto.sim.config.xmlrpc_mode = "410"
        with caplog.at_level("INFO", logger="shim"):
            assert await auto.call("ContactService.load", 1, ["FirstName"]) == {"FirstName": "A"}
            assert await auto.call("ContactService.load", 1, ["Id"]) == {"Id": 1}
        messages = [
            r.getMessage() for r in caplog.records if r.name in ("shim.rest", "shim.serve.app")
        ]
        assert any("answered through REST v2 instead" in m for m in messages)
        assert any("through REST v2 (XML-RPC down)" in m for m in messages)
        assert auto.app.services is not None
        auto.app.services.audit.flush_now()
    finally:
        await auto.client.aclose()
        await auto.app.shutdown()
    runner = CliRunner()
    env = {"SHIM_DB": settings.db, "SHIM_SECRET_KEY": ""}
    result = runner.invoke(cli, ["status", "--json"], env=env, catch_exceptions=False)
    [prod] = json.loads(result.output)
    assert (prod["route"], prod["rest_answers_last_hour"]) == ("auto", 2)
    result = runner.invoke(cli, ["status"], env=env, catch_exceptions=False)
    assert "route auto: 2 fallbacks to REST v2 in the last hour" in result.output


def test_cli_routes_and_readiness(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"SHIM_DB": str(tmp_path / "k.db"), "SHIM_SECRET_KEY": ""}

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    run("init")
    run("account", "add", "prod", "--service-key", "KeapAK-1")  # new accounts: auto
    run("account", "add", "stage", "--service-key", "KeapAK-2", "--route", "xmlrpc")
    out = json.loads(run("account", "list", "--json"))
    assert [(a["name"], a["route"]) for a in out] == [("prod", "auto"), ("stage", "xmlrpc")]
    assert "route auto" in run("account", "list")
    url = "http://keap.test/crm/rest/v2"
    assert "route rest" in run("account", "set", "stage", "--route", "rest", "--rest-url", url)
    out = json.loads(run("account", "list", "--json"))
    assert (out[1]["route"], out[1]["rest_url"]) == ("rest", url)
    assert "one of" in run("account", "set", "stage", "--route", "soap", code=2)
    assert "no account" in run("account", "set", "nope", "--route", "rest", code=1)
    assert "nothing to change" in run("account", "set", "stage", code=1)
    assert "http(s) URL" in run("account", "set", "stage", "--rest-url", "ftp://x", code=1)
    store = SqliteStore(str(tmp_path / "k.db"), _box(tmp_path))
    now = time.time()
    store.record_calls(
        [
            CallRecord(now, f"r{i}", "kid", "prod", method, "ok", 200, 1.0, 10, 10)
            for i, method in enumerate(["ContactService.load"] * 3 + ["InvoiceService.x"])
        ]
    )
    store.close()
    data = json.loads(run("readiness", "--since", "1h", "--json"))
    assert data["team"]["share"] == 0.75 and data["keys"][0]["key_id"] == "kid"
    assert "75% would keep working" in run("readiness")


def _box(tmp_path: Path) -> Any:
    from shim.store.secrets import SecretBox, decode_master_key

    key = (tmp_path / "k.db.key").read_text().strip()
    return SecretBox(decode_master_key(key))
