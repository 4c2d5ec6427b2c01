"""The bundled Keap simulator: token endpoint, XML-RPC endpoint, quotas, fault injection.

Everything runs in-process through ``httpx.ASGITransport`` with a fake clock, except one
test that checks what a connection reset looks like over a real socket.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from shim.simulator import SimConfig, Simulator, describe
from shim.xmlrpc import Fault, Value, dumps_call, parse_response

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
SPENT_CURRENT = {"error": "invalid_request", "error_description": "Invalid Refresh Token"}
SPENT_OLDER = {"error": "invalid_grant", "error_description": "Invalid refresh token"}
INVALID_TOKEN = {
    "fault": {
        "faultstring": "Invalid Access Token",
        "detail": {"errorcode": "keymanagement.service.invalid_access_token"},
    }
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


class Keap:
    """A simulator, its fake clock, an HTTP client on it and one authorized OAuth client."""

    def __init__(self, sim: Simulator, clock: Clock, http: httpx.AsyncClient) -> None:
        self.sim, self.clock, self.http = sim, clock, http
        self.client_id, self.secret = sim.add_client()
        self.tokens = sim.issue_tokens(self.client_id)

    def basic(self, client_id: str | None = None, secret: str | None = None) -> dict[str, str]:
        raw = f"{client_id or self.client_id}:{secret or self.secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    async def refresh(self, token: str | None = None, **headers: str) -> httpx.Response:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": token or self.tokens["refresh_token"],
        }
        return await self.http.post("/token", data=form, headers=headers or self.basic())

    async def post_rpc(self, method: str, *params: Any, **kw: Any) -> httpx.Response:
        headers = kw.pop("headers", {"Authorization": "Bearer " + self.tokens["access_token"]})
        body = dumps_call(method, ["placeholder", *params])
        return await self.http.post(kw.pop("path", "/crm/xmlrpc/v1"), content=body, headers=headers)

    async def call(self, method: str, *params: Any) -> Any:
        response = await self.post_rpc(method, *params)
        assert response.status_code == 200, response.text
        return parse_response(response.content)

    async def fault(self, method: str, *params: Any) -> Fault:
        with pytest.raises(Fault) as info:
            await self.call(method, *params)
        return info.value


@contextlib.asynccontextmanager
async def running(config: SimConfig) -> AsyncIterator[Keap]:
    clock = Clock()
    sim = Simulator(config, clock=clock)
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://keap.test") as http:
        yield Keap(sim, clock, http)


def configured(**changes: Any) -> AbstractAsyncContextManager[Keap]:
    """A Keap with a non-default config."""
    return running(SimConfig(**changes))


@pytest.fixture
async def keap() -> AsyncIterator[Keap]:
    async with running(SimConfig()) as k:
        yield k


# --- authorize and code exchange ---


async def test_authorize_redirects_with_code_scope_and_state(keap: Keap) -> None:
    params = {
        "client_id": keap.client_id,
        "redirect_uri": "http://localhost:9/cb",
        "response_type": "code",
        "scope": "full",
        "state": "xyz",
    }
    response = await keap.http.get("/app/oauth/authorize", params=params)
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith("http://localhost:9/cb?code=")
    assert "scope=full%7Cab123.infusionsoft.com" in location
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["xyz"]

    unknown = await keap.http.get("/app/oauth/authorize", params={**params, "client_id": "nope"})
    assert unknown.status_code == 400
    assert "text/html" in unknown.headers["content-type"]


async def test_code_exchange_is_single_use_and_checks_redirect_uri(keap: Keap) -> None:
    code = keap.sim.auth.authorize(keap.client_id, "http://localhost:9/cb", keap.clock())
    form = {
        "client_id": keap.client_id,
        "client_secret": keap.secret,
        "code": code,
        "grant_type": "authorization_code",
        "redirect_uri": "http://localhost:9/other",
    }
    mismatch = await keap.http.post("/token", data=form)
    assert mismatch.status_code == 400 and mismatch.json()["error"] == "invalid_grant"
    bad_secret = await keap.http.post(
        "/token", data={**form, "client_secret": "x", "redirect_uri": "http://localhost:9/cb"}
    )
    assert bad_secret.status_code == 401 and bad_secret.json()["error"] == "invalid_client"

    ok = await keap.http.post("/token", data={**form, "redirect_uri": "http://localhost:9/cb"})
    assert ok.status_code == 200
    pair = ok.json()
    assert set(pair) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 86400
    assert pair["scope"] == "full|ab123.infusionsoft.com"
    assert ok.headers["cache-control"] == "no-store"

    again = await keap.http.post("/token", data={**form, "redirect_uri": "http://localhost:9/cb"})
    assert again.status_code == 400
    assert keap.sim.stats()["code_exchanges"] == 1


async def test_unsupported_grant(keap: Keap) -> None:
    response = await keap.http.post("/token", data={"grant_type": "password"})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


# --- refresh ---


async def test_refresh_rotates_and_old_token_is_spent_at_once(keap: Keap) -> None:
    first = await keap.refresh()
    assert first.status_code == 200
    new = first.json()
    assert new["refresh_token"] != keap.tokens["refresh_token"]
    assert new["access_token"] != keap.tokens["access_token"]

    reuse = await keap.refresh()
    assert reuse.status_code == 400
    assert reuse.json() == SPENT_CURRENT

    second = await keap.refresh(new["refresh_token"])
    assert second.status_code == 200
    stats = keap.sim.stats()
    assert (stats["refresh_requests"], stats["refreshes_served"]) == (3, 2)

    # Default: the access token from before a refresh keeps working until it expires.
    assert await keap.call("DataService.echo", "hi") == "hi"


async def test_spent_body_older_gateway_and_garbage_token() -> None:
    async with configured(spent_body="older") as keap:
        assert (await keap.refresh()).status_code == 200
        reuse = await keap.refresh()
        assert (reuse.status_code, reuse.json()) == (400, SPENT_OLDER)
        garbage = await keap.refresh("not-a-token")
        assert (garbage.status_code, garbage.json()) == (400, SPENT_OLDER)


async def test_old_access_token_revoked_when_configured() -> None:
    async with configured(old_access_token_valid_after_refresh=False) as keap:
        assert (await keap.refresh()).status_code == 200
        response = await keap.post_rpc("DataService.echo", "hi")
        assert response.status_code == 401


async def test_refresh_requires_basic_auth_unless_configured(keap: Keap) -> None:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": keap.tokens["refresh_token"],
        "client_id": keap.client_id,
        "client_secret": keap.secret,
    }
    response = await keap.http.post("/token", data=form)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    wrong = await keap.refresh(**keap.basic(secret="wrong"))
    assert wrong.status_code == 401
    # The refused attempts did not spend the token.
    assert (await keap.refresh()).status_code == 200

    async with configured(refresh_body_credentials=True) as lenient:
        form["refresh_token"] = lenient.tokens["refresh_token"]
        form["client_id"], form["client_secret"] = lenient.client_id, lenient.secret
        assert (await lenient.http.post("/token", data=form)).status_code == 200


async def test_refresh_token_lifetime_and_restart(keap: Keap) -> None:
    keap.clock.t += 44 * 86400
    renewed = (await keap.refresh()).json()
    keap.clock.t += 44 * 86400  # 88 days after the chain began: each refresh restarted it
    assert (await keap.refresh(renewed["refresh_token"])).status_code == 200

    async with configured(refresh_restarts_lifetime=False) as fixed:
        fixed.clock.t += 44 * 86400
        renewed = (await fixed.refresh()).json()
        fixed.clock.t += 2 * 86400
        expired = await fixed.refresh(renewed["refresh_token"])
        assert (expired.status_code, expired.json()) == (400, SPENT_CURRENT)


# --- the XML-RPC endpoint: auth, privateKey, content type ---


async def test_expired_or_missing_token_gets_json_401(keap: Keap) -> None:
    keap.clock.t += 86400
    response = await keap.post_rpc("DataService.echo", "hi")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == INVALID_TOKEN
    assert (await keap.post_rpc("DataService.echo", "x", headers={})).status_code == 401
    assert keap.sim.stats()["xmlrpc_calls"] == 0


async def test_query_token_service_key_and_private_key_stats(keap: Keap) -> None:
    token = keap.tokens["access_token"]
    body = dumps_call("DataService.echo", ["local-key-must-not-arrive", "a"])
    response = await keap.http.post("/crm/xmlrpc", params={"access_token": token}, content=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/xml;charset=UTF-8"
    assert parse_response(response.content) == "a"

    key = keap.sim.add_service_key()
    assert key.startswith("KeapAK-")
    by_key = await keap.post_rpc("DataService.echo", "b", headers={"X-Keap-API-Key": key})
    assert parse_response(by_key.content) == "b"
    bad_key = await keap.post_rpc("DataService.echo", "b", headers={"X-Keap-API-Key": "KeapAK-x"})
    assert bad_key.status_code == 401

    stats = keap.sim.stats()
    assert stats["xmlrpc_calls"] == 2
    assert stats["last_private_key"] == "placeholder"
    assert stats["private_keys_seen"] == ["local-key-must-not-arrive", "placeholder"]
    assert stats["calls_by_method"] == {"DataService.echo": 2}


async def test_missing_private_key_parse_error_and_unknown_method(keap: Keap) -> None:
    headers = {"Authorization": "Bearer " + keap.tokens["access_token"]}
    empty = await keap.http.post(
        "/crm/xmlrpc/v1", content=dumps_call("DataService.echo", []), headers=headers
    )
    with pytest.raises(Fault) as info:
        parse_response(empty.content)
    assert info.value.code == 12 and info.value.string.startswith("[InvalidParameter]")

    junk = await keap.http.post("/crm/xmlrpc/v1", content=b"<methodCall>", headers=headers)
    assert junk.status_code == 200
    with pytest.raises(Fault) as info:
        parse_response(junk.content)
    assert info.value.code == 0
    assert info.value.string.startswith("Failed to parse XML-RPC request: ")

    fault = await keap.fault("Foo.bar", 1)
    assert (fault.code, fault.string) == (0, "No such handler: Foo.bar")
    fault = await keap.fault("ContactService.load", "1", ["Id"])
    assert fault.code == 12
    assert fault.string == (
        "[InvalidParameter]No method matching arguments: "
        "java.lang.String, java.lang.String, [Ljava.lang.Object;"
    )


@pytest.mark.parametrize(
    ("mode", "status"), [("503", 503), ("404", 404), ("410", 410), ("off", 200)]
)
async def test_brownout_modes(keap: Keap, mode: str, status: int) -> None:
    keap.sim.config.xmlrpc_mode = mode  # type: ignore[assignment]
    response = await keap.post_rpc("DataService.echo", "x")
    assert response.status_code == status
    if mode == "off":
        with pytest.raises(Fault) as info:
            parse_response(response.content)
        assert info.value.string.startswith("[Unexpected]")
    else:
        assert response.headers["content-type"].startswith("application/json")


# --- throttling and usage headers ---


async def test_usage_headers_on_every_answer(keap: Keap) -> None:
    for used in (1, 2):
        response = await keap.post_rpc("DataService.echo", "x")
        h = response.headers
        assert h["x-keap-product-throttle-limit"] == "1500"
        assert h["x-keap-product-throttle-time-unit"] == "minute"
        assert h["x-keap-product-throttle-interval"] == "1"
        assert h["x-keap-product-throttle-used"] == str(used)
        assert h["x-keap-product-throttle-available"] == str(1500 - used)
        assert h["x-keap-product-quota-limit"] == "150000"
        assert h["x-keap-product-quota-time-unit"] == "day"
        assert h["x-keap-product-quota-interval"] == "1"
        assert h["x-keap-product-quota-used"] == str(used)
        assert h["x-keap-product-quota-available"] == str(150000 - used)
        midnight = datetime.datetime(2023, 11, 15, tzinfo=datetime.timezone.utc).timestamp()
        assert h["x-keap-product-quota-expiry-time"] == str(int(midnight * 1000))


async def test_throttle_spike_minute_and_day() -> None:
    async with configured(throttle=True, key_spike_limit=3, key_minute_limit=5) as keap:
        key = {"X-Keap-API-Key": keap.sim.add_service_key()}
        statuses = [
            (await keap.post_rpc("DataService.echo", "x", headers=key)).status_code
            for _ in range(4)
        ]
        assert statuses == [200, 200, 200, 429]
        spike = await keap.post_rpc("DataService.echo", "x", headers=key)
        assert (
            spike.json()["fault"]["detail"]["errorcode"]
            == "policies.ratelimit.SpikeArrestViolation"
        )
        assert spike.headers["retry-after"] == "1"

        keap.clock.t += 1
        for _ in range(2):
            assert (await keap.post_rpc("DataService.echo", "x", headers=key)).status_code == 200
        over = await keap.post_rpc("DataService.echo", "x", headers=key)
        assert over.status_code == 429
        fault = over.json()["fault"]
        assert fault["detail"]["errorcode"] == "policies.ratelimit.QuotaViolation"
        assert fault["faultstring"].startswith(
            "Rate limit quota violation. Quota limit  exceeded. Identifier : "
        )
        assert over.headers["retry-after"] == "59"
        assert over.headers["x-keap-product-throttle-available"] == "0"
        assert over.headers["x-keap-product-throttle-used"] == "5"
        keap.clock.t += 60
        assert (await keap.post_rpc("DataService.echo", "x", headers=key)).status_code == 200
        # OAuth clients have their own, separate counters.
        assert (await keap.post_rpc("DataService.echo", "x")).status_code == 200
        assert keap.sim.stats()["xmlrpc_throttled"] == 3

    async with configured(throttle=True, oauth_day_limit=2) as keap:
        for _ in range(2):
            assert (await keap.post_rpc("DataService.echo", "x")).status_code == 200
            keap.clock.t += 1
        over = await keap.post_rpc("DataService.echo", "x")
        assert over.status_code == 429
        midnight = datetime.datetime(2023, 11, 15, tzinfo=datetime.timezone.utc).timestamp()
        assert over.headers["retry-after"] == str(int(midnight - keap.clock.t))
        keap.clock.t = midnight
        assert (await keap.post_rpc("DataService.echo", "x")).status_code == 200


# --- token-endpoint fault injection ---


async def test_failure_queue_plain_failures_leave_token_valid(keap: Keap) -> None:
    keap.sim.config.failure_retry_after = 7
    keap.sim.fail_token_requests("500", "503", "429", {"kind": "timeout", "seconds": 0.01})
    first = await keap.refresh()
    assert first.status_code == 500 and "text/html" in first.headers["content-type"]
    second = await keap.refresh()
    assert second.status_code == 503 and "fault" in second.json()
    third = await keap.refresh()
    assert third.status_code == 429 and third.headers["retry-after"] == "7"
    assert (await keap.refresh()).status_code == 504
    assert (await keap.refresh()).status_code == 200  # never spent by the failures
    stats = keap.sim.stats()
    assert (stats["refresh_requests"], stats["refreshes_served"]) == (5, 1)


async def test_reset_breaks_the_connection(keap: Keap) -> None:
    keap.sim.fail_token_requests("reset")
    with pytest.raises(httpx.RemoteProtocolError):
        await keap.refresh()
    assert (await keap.refresh()).status_code == 200  # a plain reset spent nothing


async def test_after_failures_spend_the_token_and_lose_the_answer(keap: Keap) -> None:
    keap.sim.fail_token_requests("reset-after", {"kind": "timeout", "seconds": 0.01, "after": True})
    with pytest.raises(httpx.RemoteProtocolError):
        await keap.refresh()
    assert (await keap.refresh()).json() == SPENT_CURRENT
    lost_chain = keap.sim.issue_tokens(keap.client_id)["refresh_token"]
    late = await keap.refresh(lost_chain)  # answered, just late
    assert late.status_code == 200
    assert keap.sim.stats()["refreshes_served"] == 2


async def test_bad_failure_spec_is_refused(keap: Keap) -> None:
    with pytest.raises(ValueError):
        keap.sim.fail_token_requests("418")
    assert keap.sim.stats()["token_failures_pending"] == 0


async def test_xmlrpc_failure_queue(keap: Keap) -> None:
    keap.sim.fail_xmlrpc_requests("503", "reset-after")
    assert (await keap.post_rpc("ContactService.add", {"FirstName": "A"})).status_code == 503
    with pytest.raises(httpx.RemoteProtocolError):
        await keap.post_rpc("ContactService.add", {"FirstName": "B"})
    # The call behind the reset did run: only "B" exists.
    rows = await keap.call("DataService.query", "Contact", 10, 0, {}, ["FirstName"])
    assert rows == [{"FirstName": "B"}]


# --- hold ---


async def _wait_held(sim: Simulator, count: int) -> None:
    for _ in range(200):
        if sim.held == count:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"expected {count} held, have {sim.held}")


async def test_hold_before_consumes_nothing_until_released(keap: Keap) -> None:
    keap.sim.config.hold_refresh = "before"
    first = asyncio.create_task(keap.refresh())
    second = asyncio.create_task(keap.refresh())
    await _wait_held(keap.sim, 2)
    assert keap.sim.stats()["held_refreshes"] == 2
    assert keap.sim.stats()["refreshes_served"] == 0
    assert keap.sim.release(1) == 1
    assert (await first).status_code == 200
    assert keap.sim.release() == 1
    assert (await second).json() == SPENT_CURRENT  # the race Keap's single-use tokens lose


async def test_hold_after_spends_the_token_before_answering(keap: Keap) -> None:
    keap.sim.config.hold_refresh = "after"
    held = asyncio.create_task(keap.refresh())
    await _wait_held(keap.sim, 1)
    assert keap.sim.stats()["refreshes_served"] == 1
    assert (await keap.refresh()).json() == SPENT_CURRENT  # failed grants are not held
    keap.sim.release()
    assert (await held).status_code == 200


# --- control API ---


async def test_control_api(keap: Keap) -> None:
    http = keap.http
    client = (await http.post("/_sim/clients", json={})).json()
    pair = (await http.post("/_sim/tokens", json={"client_id": client["client_id"]})).json()
    assert pair["token_type"] == "bearer"
    assert (await http.post("/_sim/tokens", json={"client_id": "nope"})).status_code == 404
    key = (await http.post("/_sim/service-keys")).json()["service_key"]
    assert key.startswith("KeapAK-")

    config = (
        await http.post("/_sim/config", json={"access_token_lifetime": 60, "spent_body": "older"})
    ).json()
    assert config["access_token_lifetime"] == 60 and config["spent_body"] == "older"
    assert (await http.post("/_sim/config", json={"bogus": 1})).status_code == 400
    assert (await http.post("/_sim/config", json={"hold_refresh": "maybe"})).status_code == 400
    assert (await http.post("/_sim/config", json={"throttle": "yes"})).status_code == 400
    assert (await http.get("/_sim/config")).json()["spent_body"] == "older"
    short = (await http.post("/_sim/tokens", json={"client_id": client["client_id"]})).json()
    assert short["expires_in"] == 60

    queued = await http.post("/_sim/token-failures", json={"failures": ["503", "reset-after"]})
    assert queued.json() == {"pending": 2}
    assert (await http.post("/_sim/token-failures", json={"failures": ["nope"]})).status_code == 400
    cleared = await http.post("/_sim/token-failures", json={"failures": [], "clear": True})
    assert cleared.json() == {"pending": 0}

    await http.post("/_sim/config", json={"hold_refresh": "before"})
    task = asyncio.create_task(keap.refresh())
    await _wait_held(keap.sim, 1)
    assert (await http.get("/_sim/stats")).json()["held_refreshes"] == 1
    assert (await http.post("/_sim/release", json={})).json() == {"released": 1, "held": 0}
    assert (await task).status_code == 200

    clock = (await http.post("/_sim/clock", json={"advance": 61})).json()
    assert clock["now"] == T0 + 61
    expired = await http.post(
        "/crm/xmlrpc/v1",
        content=dumps_call("DataService.echo", ["k", "x"]),
        headers={"Authorization": "Bearer " + short["access_token"]},
    )
    assert expired.status_code == 401  # 60-second tokens, 61 seconds later

    revoked = await http.post("/_sim/revoke", json={"token": key})
    assert revoked.json() == {"revoked": True}
    assert (await http.post("/_sim/nothing")).status_code == 404
    assert (await http.post("/_sim/stats", content=b"{not json")).status_code == 400
    stats = (await http.get("/_sim/stats")).json()
    json.dumps(stats)
    assert stats["refreshes_served"] == 1


def test_describe_gives_everything_an_account_needs() -> None:
    sim = Simulator(SimConfig())
    info = describe(sim, "http://127.0.0.1:8780/")
    assert info["xmlrpc_url"] == "http://127.0.0.1:8780/crm/xmlrpc/v1"
    assert info["token_url"] == "http://127.0.0.1:8780/token"
    assert info["authorize_url"] == "http://127.0.0.1:8780/app/oauth/authorize"
    assert info["service_key"].startswith("KeapAK-")
    assert info["tokens"]["scope"] == "full|ab123.infusionsoft.com"
    assert sim.auth.clients[info["client_id"]].secret == info["client_secret"]


# --- ContactService ---


async def test_contact_service(keap: Keap) -> None:
    birthday = datetime.datetime(1815, 12, 10)
    cid = await keap.call(
        "ContactService.add",
        {"FirstName": "Ada", "Email": "ada@example.com", "Birthday": birthday, "_LegacyId": 7},
    )
    assert isinstance(cid, int)
    loaded = await keap.call(
        "ContactService.load",
        cid,
        ["Id", "FirstName", "LastName", "Birthday", "_LegacyId", "DateCreated"],
    )
    created = datetime.datetime(2023, 11, 14, 22, 13, 20)
    assert loaded == {
        "Id": cid,
        "FirstName": "Ada",
        "Birthday": birthday,
        "_LegacyId": "7",
        "DateCreated": created,
    }  # LastName is empty, so it is left out
    assert await keap.call("ContactService.update", cid, {"LastName": "King"}) == cid

    assert await keap.call("ContactService.addToGroup", cid, 100) is True
    assert await keap.call("ContactService.addToGroup", cid, 104) is True
    assert (await keap.call("ContactService.load", cid, ["Groups"])) == {"Groups": "100,104"}
    assert await keap.call("ContactService.removeFromGroup", cid, 100) is True
    assert (await keap.call("ContactService.load", cid, ["Groups"])) == {"Groups": "104"}

    other = await keap.call("ContactService.add", {"EmailAddress2": "ADA@example.com"})
    found = await keap.call("ContactService.findByEmail", "ada@EXAMPLE.com", ["Id", "LastName"])
    assert found == [{"Id": cid, "LastName": "King"}, {"Id": other}]
    assert await keap.call("ContactService.findByEmail", "nobody@example.com", ["Id"]) == []


async def test_contact_service_faults(keap: Keap) -> None:
    cid = await keap.call("ContactService.add", {"FirstName": "A"})
    missing = await keap.fault("ContactService.load", 9999, ["Id"])
    assert (missing.code, missing.string) == (5, "[RecordNotFound]Record was not found")
    assert (await keap.fault("ContactService.update", 9999, {"FirstName": "x"})).code == 5
    assert (await keap.fault("ContactService.addToGroup", 9999, 100)).code == 5
    assert (await keap.fault("ContactService.addToGroup", cid, 9999)).code == 5
    bogus = await keap.fault("ContactService.load", cid, ["Bogus"])
    assert (bogus.code, bogus.string) == (10, "[NoFieldFound]No field found: Contact.Bogus")
    undefined = await keap.fault("ContactService.add", {"_Undefined": "x"})
    assert undefined.string == "[NoFieldFound]No field found: Contact._Undefined"
    read_only = await keap.fault("ContactService.update", cid, {"DateCreated": "2024-01-01"})
    assert read_only.code == 8 and read_only.string.startswith("[NoFieldAccess]")
    wrong_type = await keap.fault("ContactService.add", {"OwnerID": "not a number"})
    assert wrong_type.code == 12
    assert (await keap.fault("ContactService.load", cid, [])).string.startswith("[NoFields]")


# --- DataService ---


async def test_data_service_crud_and_settings(keap: Keap) -> None:
    assert await keap.call("DataService.echo", "hello") == "hello"
    tag = await keap.call(
        "DataService.add", "ContactGroup", {"GroupName": "VIP", "GroupCategoryId": 12}
    )
    assert await keap.call(
        "DataService.load", "ContactGroup", tag, ["GroupName", "GroupCategoryId"]
    ) == {
        "GroupName": "VIP",
        "GroupCategoryId": 12,
    }
    assert (
        await keap.call("DataService.update", "ContactGroup", tag, {"GroupDescription": "d"}) == tag
    )
    cid = await keap.call("DataService.add", "Contact", {"FirstName": "B", "Email": "b@x.org"})
    await keap.call("ContactService.addToGroup", cid, tag)
    assigned = await keap.call(
        "DataService.query",
        "ContactGroupAssign",
        10,
        0,
        {"GroupId": tag},
        [
            "ContactId",
            "GroupId",
            "ContactGroup",
            "Contact.Email",
            "Contact.FirstName",
            "DateCreated",
        ],
    )
    assert assigned == [
        {
            "ContactId": cid,
            "GroupId": tag,
            "ContactGroup": "VIP",
            "Contact.Email": "b@x.org",
            "Contact.FirstName": "B",
            "DateCreated": datetime.datetime(2023, 11, 14, 22, 13, 20),
        }
    ]
    assert await keap.call("DataService.delete", "ContactGroup", tag) is True
    assert await keap.call("DataService.count", "ContactGroupAssign", {}) == 0
    assert (await keap.fault("DataService.delete", "ContactGroup", tag)).code == 5
    assert (await keap.fault("DataService.load", "ContactGroup", tag, ["Id"])).code == 5

    assert await keap.call("DataService.getAppSetting", "Contact", "optiontypes") == (
        "Prospect,Customer,Partner,Personal Contact,Vendor"
    )
    assert await keap.call("DataService.getAppSetting", "Nope", "nope") == ""


async def test_data_service_faults(keap: Keap) -> None:
    no_table = await keap.fault("DataService.query", "Bogus", 10, 0, {}, ["Id"])
    assert (no_table.code, no_table.string) == (9, "[NoTableFound]No table found: Bogus")
    no_field = await keap.fault("DataService.query", "Contact", 10, 0, {"Bogus": "x"}, ["Id"])
    assert no_field.string == "[NoFieldFound]No field found: Contact.Bogus"
    no_return_field = await keap.fault("DataService.query", "Contact", 10, 0, {}, ["Bogus"])
    assert no_return_field.code == 10
    no_access = await keap.fault("DataService.add", "ContactGroupAssign", {"ContactId": 1})
    assert no_access.code == 7 and no_access.string.startswith("[NoTableAccess]")
    assert (await keap.fault("DataService.query", "Contact", 0, 0, {}, ["Id"])).code == 12
    assert (await keap.fault("DataService.query", "Contact", 10, 0, {}, "Id")).code == 12
    assert (
        await keap.fault("DataService.query", "Contact", 10, 0, {"Id": "~>~x"}, ["Id"])
    ).code == 12
    assert (await keap.fault("DataService.count", "Contact")).code == 12
    assert (await keap.fault("DataService.echo")).code == 12


async def _people(keap: Keap) -> list[int]:
    people = [
        {"FirstName": "Alice", "LastName": "Smith", "Email": "alice@example.com", "OwnerID": 1,
         "Birthday": "1990-01-15"},
        {"FirstName": "Bob", "LastName": "Smithers", "Email": "bob@test.org", "OwnerID": 2},
        {"FirstName": "carol", "LastName": "Jones", "OwnerID": 10,
         "Birthday": datetime.datetime(2000, 6, 1)},
    ]  # fmt: skip
    return [await keap.call("ContactService.add", p) for p in people]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({"LastName": "smith"}, [0]),  # exact, case-insensitive
        ({"LastName": "Smith%"}, [0, 1]),
        ({"Email": "%example.com"}, [0]),
        ({"Email": "%@%"}, [0, 1]),
        ({"FirstName": "%AR%"}, [2]),
        ({"Email": "~null~"}, [2]),
        ({"Email": "~<>~null~"}, [0, 1]),
        ({"OwnerID": "~>~2"}, [2]),  # numeric, not text: 10 > 2
        ({"OwnerID": "~>=~2"}, [1, 2]),
        ({"OwnerID": "~<~2"}, [0]),
        ({"OwnerID": "~<=~2"}, [0, 1]),
        ({"OwnerID": "~<>~2"}, [0, 2]),
        ({"OwnerID": 10}, [2]),
        ({"Birthday": "~>~1995-01-01"}, [2]),
        ({"Birthday": "~<~1995-01-01 00:00:00"}, [0]),
        ({"LastName": "Smith%", "OwnerID": 2}, [1]),
        ({"Id": "%"}, [0, 1, 2]),
        ({}, [0, 1, 2]),
    ],
)
async def test_query_operators(keap: Keap, criteria: dict[str, Value], expected: list[int]) -> None:
    ids = await _people(keap)
    rows = await keap.call("DataService.query", "Contact", 1000, 0, criteria, ["Id"])
    assert rows == [{"Id": ids[i]} for i in expected]
    assert await keap.call("DataService.count", "Contact", criteria) == len(expected)


async def test_query_paging_ordering_and_find_by_field(keap: Keap) -> None:
    ids = await _people(keap)
    fields = ["Id"]
    page0 = await keap.call("DataService.query", "Contact", 2, 0, {}, fields)
    page1 = await keap.call("DataService.query", "Contact", 2, 1, {}, fields)
    assert page0 + page1 == [{"Id": i} for i in ids]
    by_name = await keap.call(
        "DataService.query", "Contact", 10, 0, {}, ["FirstName"], "FirstName", False
    )
    assert by_name == [{"FirstName": "carol"}, {"FirstName": "Bob"}, {"FirstName": "Alice"}]
    by_birthday = await keap.call(
        "DataService.query", "Contact", 10, 0, {}, fields, "Birthday", True
    )
    assert by_birthday == [{"Id": ids[1]}, {"Id": ids[0]}, {"Id": ids[2]}]  # nulls first
    bad_order = await keap.fault("DataService.query", "Contact", 10, 0, {}, fields, "Nope", True)
    assert bad_order.code == 10

    found = await keap.call(
        "DataService.findByField", "Contact", 10, 0, "LastName", "Smith%", ["Id"]
    )
    assert found == [{"Id": ids[0]}, {"Id": ids[1]}]
    by_int = await keap.call("DataService.findByField", "Contact", 10, 0, "OwnerID", 2, ["Id"])
    assert by_int == [{"Id": ids[1]}]


async def test_query_limit_is_capped_at_1000(keap: Keap) -> None:
    for _ in range(3):
        await keap.call("DataService.add", "ContactGroupCategory", {"CategoryName": "c"})
    rows = await keap.call("DataService.query", "ContactGroupCategory", 5000, 0, {}, ["Id"])
    assert isinstance(rows, list) and len(rows) == 5
    tags = await keap.call("DataService.query", "ContactGroup", 1000, 0, {}, ["Id", "GroupName"])
    assert [t["GroupName"] for t in tags] == [
        "Newsletter", "Webinar Attendee", "Customer", "Do Not Contact",
    ]  # fmt: skip


# --- FileService ---


async def test_file_upload_forms_and_filebox(keap: Keap) -> None:
    cid = await keap.call("ContactService.add", {"FirstName": "F"})
    text_id = await keap.call(
        "FileService.uploadFile", cid, "notes.txt", base64.b64encode(b"hello").decode()
    )
    bytes_id = await keap.call("FileService.uploadFile", "raw.bin", b"\x00\x01")
    assert await keap.call("FileService.getFile", text_id) == base64.b64encode(b"hello").decode()
    assert await keap.call("FileService.getFile", bytes_id) == "AAE="
    rows = await keap.call(
        "DataService.query",
        "FileBox",
        10,
        0,
        {},
        ["Id", "ContactId", "FileName", "Extension", "FileSize"],
    )
    assert rows == [
        {
            "Id": text_id,
            "ContactId": cid,
            "FileName": "notes.txt",
            "Extension": "txt",
            "FileSize": 5,
        },
        {"Id": bytes_id, "FileName": "raw.bin", "Extension": "bin", "FileSize": 2},
    ]
    assert (await keap.fault("FileService.getFile", 999)).code == 5
    assert (await keap.fault("FileService.uploadFile", 999, "a.txt", "aGk=")).code == 5
    assert (await keap.fault("FileService.uploadFile", cid, "a.txt", "a")).code == 12


@pytest.mark.slow
async def test_get_file_of_30_mb(keap: Keap) -> None:
    data = bytes(range(256)) * (30 * 1024 * 1024 // 256)
    file_id = keap.sim.add_file(None, "big.pdf", data)
    response = await keap.post_rpc("FileService.getFile", file_id)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    encoded = parse_response(response.content)
    assert isinstance(encoded, str)
    assert base64.b64decode(encoded) == data


# --- over a real socket ---


def test_reset_over_a_socket_is_a_broken_connection() -> None:
    from tests.support.servers import BackgroundServer

    sim = Simulator(SimConfig())
    client_id, secret = sim.add_client()
    pair = sim.issue_tokens(client_id)
    sim.fail_token_requests("reset")
    form = {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    with BackgroundServer(sim.app) as server, httpx.Client(base_url=server.url) as http:
        with pytest.raises(httpx.RemoteProtocolError):
            http.post("/token", data=form, auth=(client_id, secret))
        assert http.post("/token", data=form, auth=(client_id, secret)).status_code == 200
