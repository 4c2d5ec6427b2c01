"""REST pass-through (issue 17): ``/crm/rest/v2/...`` with a keyshim key, over real sockets.

The simulator and keyshim each run under uvicorn on loopback (``BackgroundServer``); the
clients are plain httpx and ``http.client``. ``Rest.upstream()`` counts the REST requests that
reached the simulator, so a refused request is proved to have sent nothing.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shim.access import keys
from shim.errors import InvalidParameter, NoAccess, RateLimited, UpstreamTimeout
from shim.serve import rest_passthrough as rp
from shim.settings import Settings
from shim.store.sqlite import SqliteStore
from tests.support.passthrough import HOST, Rest, rest_stack
from tests.support.stack import add_key_account, issue_key


@pytest.fixture
def rest(settings: Settings, store: SqliteStore) -> Iterator[Rest]:
    with rest_stack(settings, store) as env:
        yield env


def error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"code", "message", "status", "details"}, body
    assert body["code"] == response.status_code
    assert response.headers["content-type"] == "application/json"
    return dict(body)


# -- the pass-through itself -----------------------------------------------------------------


def test_crud_through_keyshim_with_a_bearer_key(rest: Rest) -> None:
    with rest.client() as c:
        made = c.post(
            "/contacts",
            json={
                "given_name": "Ada",
                "email_addresses": [{"email": "ada@x.test", "field": "EMAIL1"}],
            },
        )
        assert made.status_code in (200, 201), made.text
        contact = made.json()
        cid = contact["id"]
        got = c.get(f"/contacts/{cid}")
        assert got.status_code == 200 and got.json()["given_name"] == "Ada"
        patched = c.patch(
            f"/contacts/{cid}", params={"update_mask": "family_name"}, json={"family_name": "L"}
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["family_name"] == "L"
        listed = c.get("/contacts", params={"filter": "given_name==Ada", "page_size": 5})
        assert listed.status_code == 200
        assert [x["id"] for x in listed.json()["contacts"]] == [cid]
        assert c.delete(f"/contacts/{cid}").status_code == 204
        missing = c.get(f"/contacts/{cid}")
        assert missing.status_code == 404
        assert set(missing.json()) == {"code", "message", "status", "details"}  # Keap's, as is


def test_the_php_sdk_header_works_and_the_local_key_never_goes_upstream(rest: Rest) -> None:
    seen: list[dict[str, str]] = []
    original = rest.sim.rest_endpoint.handle

    async def spy(request: Any, query: bytes, send: Any) -> None:
        seen.append({k.lower(): v for k, v in request.headers.items()})
        await original(request, query, send)

    rest.sim.rest_endpoint.handle = spy  # type: ignore[method-assign]
    with httpx.Client(base_url=rest.base, headers={"X-Keap-API-Key": rest.key}) as c:
        assert c.get("/tags").status_code == 200
    assert len(seen) == 1
    sent = json.dumps(seen)
    assert rest.key not in sent and "shk_" not in sent
    assert seen[0]["authorization"].startswith("Bearer ")
    assert "x-keap-api-key" not in seen[0]


def test_a_service_key_account_sends_its_key_as_x_keap_api_key(
    settings: Settings, store: SqliteStore, rest: Rest
) -> None:
    add_key_account(store, rest.sim, rest.sim_server.url)
    store.update_account("sak", rest_url=rest.sim_server.url + "/crm/rest/v2")
    key = issue_key(store, settings, "sak")
    with rest.client(key) as c:
        assert c.get("/contacts").status_code == 200


def test_a_401_mid_session_is_answered_by_one_refresh(rest: Rest) -> None:
    with rest.client() as c:
        assert c.get("/contacts").status_code == 200
        before = rest.sim.stats()
        rest.sim.auth.access.clear()  # Keap forgets every access token
        assert c.get("/contacts").status_code == 200
        assert c.get("/tags").status_code == 200
    after = rest.sim.stats()
    assert after["refreshes_served"] == before["refreshes_served"] + 1


def test_bad_keys_are_refused_locally_with_keaps_error_shape(rest: Rest) -> None:
    revoked = issue_key(rest.store, rest.settings, "prod")
    rest.store.revoke_key(keys.id_given(revoked), time.time() - 1)
    before = rest.upstream()
    keap_token = "KeapAK-" + "a" * 40  # a real Keap credential is not a keyshim key
    for key in (None, "shk_" + "x" * 40, revoked, keap_token):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with httpx.Client(base_url=rest.base, headers=headers) as c:
            r = c.get("/contacts")
        assert r.status_code == 401, r.text
        assert error(r)["status"] == "UNAUTHENTICATED"
    assert rest.upstream() == before


def test_rest_allowlist_patterns(rest: Rest) -> None:
    key = issue_key(
        rest.store,
        rest.settings,
        "prod",
        allow=keys.validate_allow(["GET /contacts*", "POST /tags/*/contacts:applyTags"]),
    )
    before = rest.upstream()
    with rest.client(key) as c:
        assert c.get("/contacts", params={"page_size": 1}).status_code == 200
        refused = c.get("/tags")
        assert refused.status_code == 403
        assert error(refused)["status"] == "PERMISSION_DENIED"
        assert "GET /tags" in refused.json()["message"]
        assert c.delete("/contacts/1").status_code == 403
    assert rest.upstream() == before + 1


def test_the_per_key_rate_applies(rest: Rest) -> None:
    key = issue_key(rest.store, rest.settings, "prod", rate_per_min=2)
    with rest.client(key) as c:
        statuses = [c.get("/tags").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


def test_keap_answers_come_back_unchanged(rest: Rest) -> None:
    with rest.client() as c:
        r = c.get("/contacts/999999")
        json_type = {"Content-Type": "application/json"}
        raw = c.post("/contacts", content=b"{not json", headers=json_type)
    assert r.status_code == 404 and r.json()["status"] == "NOT_FOUND"
    assert raw.status_code == 400
    assert r.headers.get("x-keap-product-quota-limit") is not None


def test_http10_and_keep_alive_clients(rest: Rest) -> None:
    conn = http.client.HTTPConnection(HOST, rest.shim.port, timeout=10)
    try:
        for _ in range(3):  # one keep-alive connection, three requests
            bearer = {"Authorization": f"Bearer {rest.key}"}
            conn.request("GET", "/crm/rest/v2/tags", headers=bearer)
            answer = conn.getresponse()
            assert answer.status == 200
            assert "tags" in json.loads(answer.read())
    finally:
        conn.close()
    with socket.create_connection((HOST, rest.shim.port), timeout=10) as s:
        s.sendall(
            f"GET /crm/rest/v2/tags HTTP/1.0\r\nAuthorization: Bearer {rest.key}\r\n\r\n".encode()
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding" not in head.lower()
    assert "tags" in json.loads(body)


@pytest.mark.slow
def test_a_twenty_megabyte_file_download_is_streamed(rest: Rest) -> None:
    data = bytes(range(256)) * (20 * 4096)  # 20 MiB
    file_id = rest.sim.add_file(None, "big.bin", data)
    got = bytearray()
    with rest.client() as c, c.stream("GET", f"/files/{file_id}:data") as r:
        assert r.status_code == 200
        chunks = 0
        for chunk in r.iter_raw():
            got += chunk
            chunks += 1
    assert bytes(got) == data
    assert chunks > 1


# -- hostile requests ---------------------------------------------------------------------------

RAW_HOSTILE = [
    # (what, raw request target, status)
    ("key in the query", "/crm/rest/v2/contacts?access_token={key}", 400),
    ("key as any query value", "/crm/rest/v2/contacts?x={key}", 400),
    ("dot-dot segment", "/crm/rest/v2/../v2/contacts", 400),
    ("encoded dot-dot", "/crm/rest/v2/%2e%2e/contacts", 400),
    ("encoded slash", "/crm/rest/v2/contacts%2f1", 400),
    ("encoded CR LF", "/crm/rest/v2/contacts%0d%0aX-Evil:%201", 400),
    ("unknown version", "/crm/rest/v3/contacts", 404),
    ("no version", "/crm/rest/contacts", 404),
]


def raw_request(port: int, target: str, headers: str = "", body: bytes = b"") -> tuple[int, bytes]:
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(
            f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode()
            + body
        )
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, data.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(("what", "target", "status"), RAW_HOSTILE, ids=[h[0] for h in RAW_HOSTILE])
def test_hostile_paths_and_queries_are_refused_with_nothing_sent(
    rest: Rest, what: str, target: str, status: int
) -> None:
    before = rest.upstream()
    got, body = raw_request(
        rest.shim.port, target.format(key=rest.key), f"Authorization: Bearer {rest.key}\r\n"
    )
    assert got == status, (what, body)
    answer = json.loads(body)
    assert answer["code"] == status and set(answer) == {"code", "message", "status", "details"}
    assert rest.upstream() == before


def test_header_injection_is_refused_by_the_server_or_by_keyshim(rest: Rest) -> None:
    before = rest.upstream()
    # A raw line break in a header value: the HTTP server refuses the request outright.
    status, _ = raw_request(
        rest.shim.port,
        "/crm/rest/v2/tags",
        f"Authorization: Bearer {rest.key}\r\nAccept: a\rX-Evil: 1\r\n",
    )
    assert status == 400
    assert rest.upstream() == before


def test_a_header_with_a_control_character_is_not_forwarded() -> None:
    scope = {"headers": [(b"accept", b"json\x00X-Evil: 1"), (b"cookie", b"a=b")]}
    with pytest.raises(InvalidParameter):
        rp._forwarded_headers(scope)
    fine = rp._forwarded_headers({"headers": [(b"accept", b"json"), (b"cookie", b"a=b")]})
    assert "cookie" not in fine and fine["accept"] == "json"


def test_keap_out_of_reach_is_a_502_with_keaps_error_shape(rest: Rest) -> None:
    rest.store.update_account("prod", rest_url=f"http://{HOST}:1/crm/rest/v2")
    with rest.client() as c:
        r = c.get("/contacts")
    assert r.status_code == 502
    assert error(r)["status"] == "UNAVAILABLE"


def test_a_body_over_the_limit_is_refused_with_413(rest: Rest) -> None:
    before = rest.upstream()
    with rest.client() as c:
        r = c.post("/contacts", content=b"x" * (rest.settings.max_body + 1))
    assert r.status_code == 413
    assert error(r)["status"] == "PAYLOAD_TOO_LARGE"
    assert rest.upstream() == before


# -- pieces -------------------------------------------------------------------------------------


def test_error_table_maps_keyshim_errors_to_rest_statuses() -> None:
    assert rp.error_body(NoAccess("no"))[0] == 403
    assert rp.error_body(RateLimited())[0] == 429
    assert rp.error_body(UpstreamTimeout())[0] == 504
    status, body = rp.error_body(InvalidParameter("bad"))
    assert status == 400
    assert json.loads(body) == {
        "code": 400,
        "message": "bad",
        "status": "INVALID_ARGUMENT",
        "details": [],
    }


def test_v1_goes_to_v1_and_the_path_and_query_stay_encoded() -> None:
    from shim.models import Account

    account = Account("a", "oauth", 0.0, rest_url="https://keap.test/crm/rest/v2")
    scope = {
        "path": "/crm/rest/v1/emailAddresses/a@b.test/status",
        "raw_path": b"/crm/rest/v1/emailAddresses/a%40b.test/status",
        "query_string": b"filter=given_name%3D%3DMar%2A",
    }
    assert rp._upstream_url(account, "v1", scope) == (
        "https://keap.test/crm/rest/v1/emailAddresses/a%40b.test/status"
        "?filter=given_name%3D%3DMar%2A"
    )


def test_audit_method_names_are_templates() -> None:
    assert rp.template("/contacts/17/tags") == "/contacts/{id}/tags"
    assert rp.template("/files/9:data") == "/files/{id}:data"
    assert rp.template("/emailAddresses/a@b.test/status") == "/emailAddresses/{id}/status"
    assert rp.template("/tags/3/contacts:applyTags") == "/tags/{id}/contacts:applyTags"


def test_a_key_refused_in_the_url_is_named_in_the_audit(rest: Rest) -> None:
    status, _ = raw_request(rest.shim.port, f"/crm/rest/v2/tags?access_token={rest.key}")
    forged = rest.key[:14] + "A" * 24  # right id, wrong secret: names nothing
    from shim.access.keys import CHECK_LEN, _checksum

    forged = forged + _checksum(forged)[:CHECK_LEN]
    raw_request(rest.shim.port, f"/crm/rest/v2/tags?access_token={forged}")
    assert status == 400
    rest.shim.__exit__(None, None, None)  # flushes the audit
    rows = {(r["key_id"], r["method"]): r for r in rest.store.usage(0)}
    assert rows[(keys.id_given(rest.key), "REST GET /tags")]["calls"] == 1
    assert rows[(None, "REST GET /tags")]["calls"] == 1
