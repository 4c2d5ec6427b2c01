"""The endpoint in-process: keys, forwarding, faults (the gateway's rules: tests/keap)."""

from __future__ import annotations

import gzip
import time

import pytest

from shim import xmlrpc
from shim.errors import all_faults
from tests.support.stack import Stack, issue_key

pytestmark = pytest.mark.anyio


async def test_forwards_and_hides_the_local_key(stack: Stack) -> None:
    assert await stack.call("DataService.echo", "hi") == "hi"
    cid = await stack.call("ContactService.add", {"FirstName": "Ada", "Email": "a@x.io"})
    assert isinstance(cid, int)
    assert await stack.call("ContactService.load", cid, ["FirstName"]) == {"FirstName": "Ada"}
    stats = stack.sim.stats()
    assert stats["last_private_key"] == stack.settings.placeholder
    assert stack.key not in str(stats)


async def test_keap_faults_pass_through_unchanged(stack: Stack) -> None:
    fault = await stack.fault("ContactService.load", 987654, ["Id"])
    assert fault.code == 5 and fault.string.startswith("[RecordNotFound]")


@pytest.mark.parametrize("key", ["", "not-a-key", "shk_" + "A" * 40])
async def test_bad_keys_never_go_upstream(stack: Stack, key: str) -> None:
    before = stack.sim.stats()["xmlrpc_calls"]
    fault = await stack.fault("ContactService.load", 1, ["Id"], key=key)
    assert fault.code == 2 and fault.string.startswith("[InvalidKey]")
    assert stack.sim.stats()["xmlrpc_calls"] == before


async def test_revoked_and_expired_keys(stack: Stack) -> None:
    revoked = issue_key(stack.store, stack.settings, "prod", revoked_at=time.time() - 1)
    expired = issue_key(stack.store, stack.settings, "prod", expires_at=time.time() - 1)
    for key, word in ((revoked, "revoked"), (expired, "expired")):
        fault = await stack.fault("DataService.echo", "x", key=key)
        assert fault.code == 2 and word in fault.string
    # revocation takes effect on the very next call
    await stack.call("DataService.echo", "x")
    assert stack.store.revoke_key(stack.key[4:14], time.time())
    assert (await stack.fault("DataService.echo", "x")).string.startswith("[InvalidKey]")


async def test_allowlist_fault(stack: Stack) -> None:
    key = issue_key(stack.store, stack.settings, "prod", allow=("ContactService.*",))
    fault = await stack.fault("DataService.echo", "x", key=key)
    assert fault.code == 14 and fault.string.startswith("[NoAccess]")


async def test_keyless_calls(stack: Stack) -> None:
    before = stack.sim.stats()["xmlrpc_calls"]
    response = await stack.post(xmlrpc.dumps_call("DataService.echo", ["ping"]))
    assert xmlrpc.parse_response(response.content) == "ping"
    response = await stack.post(xmlrpc.dumps_call("DataService.getTemporaryKey", ["v", "u", "p"]))
    with pytest.raises(xmlrpc.Fault) as info:
        xmlrpc.parse_response(response.content)
    assert info.value.string.startswith("[NoAccess]")
    assert stack.sim.stats()["xmlrpc_calls"] == before


async def test_key_in_header_or_query(stack: Stack) -> None:
    body = xmlrpc.dumps_call("DataService.echo", ["backwards-compatability", "hdr"])
    response = await stack.post(body, headers={"X-Keap-API-Key": stack.key})
    assert xmlrpc.parse_response(response.content) == "hdr"
    response = await stack.post(body, path=f"/api/xmlrpc/v1?access_token={stack.key}")
    assert xmlrpc.parse_response(response.content) == "hdr"


async def test_parse_errors_are_faults(stack: Stack) -> None:
    """Keap's fault (code 0, "Failed to parse XML-RPC request: ...") with the exact reason:
    a DTD or an entity is refused by the guard, never expanded."""
    for body, reason in (
        (b"", "no element found: line 1, column 0"),
        (b"<methodCall>", "no element found: line 1, column 12"),
        (
            b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>"
            b"<methodCall><methodName>&a;</methodName></methodCall>",
            "DTDs and entities are not allowed (DTDForbidden)",
        ),
        (
            b"<?xml version='1.0'?><!DOCTYPE methodCall>"
            b"<methodCall><methodName>DataService.echo</methodName></methodCall>",
            "DTDs and entities are not allowed (DTDForbidden)",
        ),
    ):
        response = await stack.post(body)
        assert response.status_code == 200
        with pytest.raises(xmlrpc.Fault) as info:
            xmlrpc.parse_response(response.content)
        assert (info.value.code, info.value.string) == (
            0,
            f"Failed to parse XML-RPC request: {reason}",
        )
    assert stack.sim.stats()["xmlrpc_calls"] == 0


async def test_bad_method_name(stack: Stack) -> None:
    """Refused by keyshim (Keap would say "No such handler", also code 0): never sent on."""
    response = await stack.post(xmlrpc.dumps_call("system.multicall.x", [stack.key]))
    with pytest.raises(xmlrpc.Fault) as info:
        xmlrpc.parse_response(response.content)
    assert (info.value.code, info.value.string) == (
        0,
        "Failed to parse XML-RPC request: not a Service.method name: 'system.multicall.x'",
    )
    assert stack.sim.stats()["xmlrpc_calls"] == 0


async def test_http_methods_and_paths(stack: Stack) -> None:
    assert (await stack.client.get("/api/xmlrpc")).status_code == 405
    assert (await stack.client.get("/nope")).status_code == 404
    health = await stack.client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert await stack.call("DataService.echo", "v1") == "v1"
    body = xmlrpc.dumps_call("DataService.echo", [stack.key, "v1"])
    assert xmlrpc.parse_response((await stack.post(body, path="/api/xmlrpc/v1")).content) == "v1"


async def test_gzip_request_and_size_limit(stack: Stack) -> None:
    body = xmlrpc.dumps_call("DataService.echo", [stack.key, "zipped"])
    response = await stack.post(gzip.compress(body), headers={"Content-Encoding": "gzip"})
    assert xmlrpc.parse_response(response.content) == "zipped"
    bomb = gzip.compress(b"<" * (stack.settings.max_body + 10))
    response = await stack.post(bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413 and response.headers["connection"] == "close"
    with pytest.raises(xmlrpc.Fault) as info:
        xmlrpc.parse_response(response.content)
    assert info.value.string.startswith("[RequestTooLarge]")


async def test_upstream_errors_become_faults(stack: Stack) -> None:
    stack.sim.config.xmlrpc_mode = "503"
    fault = await stack.fault("DataService.echo", "x")
    assert fault.string.startswith("[UpstreamError]") and "503" in fault.string
    stack.sim.config.xmlrpc_mode = "on"
    stack.sim.config.throttle = True
    stack.sim.config.oauth_spike_limit = 1
    results = []
    for _ in range(3):
        try:
            results.append(await stack.call("DataService.echo", "x"))
        except xmlrpc.Fault as fault:
            results.append(fault.string)
    assert any(isinstance(r, str) and r.startswith("[Throttled]") for r in results)


def test_every_fault_is_documented_in_the_readme() -> None:
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for cls in all_faults():
        if cls.tag:
            assert f"[{cls.tag}]" in readme, cls.__name__
        assert f"| {cls.fault_code} " in readme, cls.__name__


async def test_one_json_access_line_per_call(stack: Stack) -> None:
    """Every call, answered or refused, leaves exactly one JSON line at INFO with its own
    request id, the key id (never the key) and the outcome; at WARNING there are none."""
    import io
    import json
    import logging

    from shim.logs import JsonFormatter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("shim.access")
    access.addHandler(handler)
    old_level = access.level
    access.setLevel(logging.INFO)
    try:
        assert await stack.call("DataService.echo", "hi") == "hi"
        await stack.fault("DataService.echo", "hi", key="shk_not_a_key")
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
        assert [line["outcome"] for line in lines] == ["ok", "InvalidKey"]
        ok, bad = lines
        assert ok["logger"] == "shim.access" and ok["level"] == "info" and ok["msg"] == "call"
        assert ok["method"] == "DataService.echo" and ok["account"] == "prod"
        assert ok["key_id"] == stack.key[4:14] and ok["upstream_status"] == 200
        assert ok["ts"].endswith("Z") and ok["duration_ms"] > 0 and ok["bytes_in"] > 0
        assert len({ok["request_id"], bad["request_id"]}) == 2
        assert bad["key_id"] is None and stack.key not in out.getvalue()

        access.setLevel(logging.WARNING)
        assert await stack.call("DataService.echo", "quiet") == "quiet"
        assert len(out.getvalue().splitlines()) == 2
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)


async def test_a_wrong_script_url_is_told_the_right_one(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    body = xmlrpc.dumps_call("DataService.echo", [stack.key, "x"])
    for path in ("/xmlrpc", "/", "/crm/xmlrpc/v1"):
        with caplog.at_level("WARNING", logger="shim.serve.app"):
            answer = await stack.client.post(path, content=body)
        assert answer.status_code == 404 and b"/api/xmlrpc" in answer.content, path
        assert any(
            path in r.getMessage() and "/api/xmlrpc" in r.getMessage() for r in caplog.records
        )
        caplog.clear()


async def test_calls_with_a_revoked_key_are_filed_under_its_id(stack: Stack) -> None:
    key = issue_key(stack.store, stack.settings, "prod", label="old cron")
    key_id = key[len("shk_") : len("shk_") + 10]
    record = stack.store.get_key(key_id)
    assert record is not None
    stack.store.revoke_key(record.id, time.time() - 1)
    fault = await stack.fault("DataService.echo", "x", key=key)
    assert fault.code == 2 and "revoked" in fault.string
    garbage = "shk_" + "x" * (len(key) - 4)
    await stack.fault("DataService.echo", "x", key=garbage)  # not a key: no id to file under
    services = stack.app.services
    assert services is not None
    services.audit.flush_now()
    rows = {(r["key_id"], r["method"]): r for r in stack.store.usage(0)}
    assert rows[(record.id, "DataService.echo")]["label"] == "old cron"
