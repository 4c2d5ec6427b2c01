"""The simulator's REST v2 endpoints, over the same data set as its XML-RPC endpoint.

In-process through ``httpx.ASGITransport`` with a fake clock, like ``test_simulator.py``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from shim.simulator import SimConfig, Simulator
from shim.simulator.rest.store import set_email_status
from shim.xmlrpc import Fault, dumps_call, parse_response

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
REST = "/crm/rest/v2"
INVALID_TOKEN = {
    "fault": {
        "faultstring": "Invalid Access Token",
        "detail": {"errorcode": "keymanagement.service.invalid_access_token"},
    }
}
ADA = {
    "given_name": "Ada",
    "family_name": "Lovelace",
    "email_addresses": [{"email": "ada@example.com", "field": "EMAIL1"}],
}


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


class Keap:
    """A simulator, its clock, an HTTP client and a bearer token, with REST and RPC helpers."""

    def __init__(self, sim: Simulator, clock: Clock, http: httpx.AsyncClient) -> None:
        self.sim, self.clock, self.http = sim, clock, http
        client_id, _ = sim.add_client()
        self.token = sim.issue_tokens(client_id)["access_token"]
        self.auth = {"Authorization": "Bearer " + self.token}

    async def rest(self, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = kw.pop("headers", self.auth)
        return await self.http.request(method, REST + path, headers=headers, **kw)

    async def ok(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        response = await self.rest(method, path, **kw)
        assert response.status_code == status, response.text
        return response.json() if response.content else None

    async def error(self, method: str, path: str, status: int, **kw: Any) -> dict[str, Any]:
        """A REST error answer, checked for the Error model's shape."""
        response = await self.rest(method, path, **kw)
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        assert set(body) == {"code", "message", "status", "details"}
        assert body["code"] == status and isinstance(body["message"], str)
        return body

    async def add(self, body: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.ok(
            "POST", "/contacts", 201, json=body or ADA, params=params
        )
        return result

    async def rpc(self, method: str, *params: Any) -> Any:
        body = dumps_call(method, ["placeholder", *params])
        response = await self.http.post("/crm/xmlrpc/v1", content=body, headers=self.auth)
        assert response.status_code == 200, response.text
        return parse_response(response.content)


@contextlib.asynccontextmanager
async def running(config: SimConfig) -> AsyncIterator[Keap]:
    clock = Clock()
    sim = Simulator(config, clock=clock)
    transport = httpx.ASGITransport(app=sim.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://keap.test") as http:
        yield Keap(sim, clock, http)


@pytest.fixture
async def keap() -> AsyncIterator[Keap]:
    async with running(SimConfig()) as k:
        yield k


# --- gateway: authentication, quotas, brownouts, routing ---


async def test_authentication_is_the_xmlrpc_endpoints(keap: Keap) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"X-Keap-API-Key": "KeapAK-x"}):
        response = await keap.rest("GET", "/tags", headers=headers)
        assert response.status_code == 401
        assert response.json() == INVALID_TOKEN
    key = {"X-Keap-API-Key": keap.sim.add_service_key()}
    assert (await keap.rest("GET", "/tags", headers=key)).status_code == 200
    by_query = await keap.rest("GET", "/tags", headers={}, params={"access_token": keap.token})
    assert by_query.status_code == 200
    keap.clock.t += 86400  # the access token has expired
    assert (await keap.rest("GET", "/tags")).status_code == 401
    assert keap.sim.rest_endpoint.unauthorized == 4


async def test_rest_and_xmlrpc_share_quotas_and_usage_headers() -> None:
    async with running(SimConfig(throttle=True, key_spike_limit=3)) as keap:
        key = {"X-Keap-API-Key": keap.sim.add_service_key()}
        first = await keap.rest("GET", "/tags", headers=key)
        assert first.headers["x-keap-product-throttle-used"] == "1"
        assert first.headers["x-keap-product-quota-used"] == "1"
        assert first.headers["x-keap-product-throttle-limit"] == "240"
        body = dumps_call("DataService.echo", ["k", "x"])
        rpc = await keap.http.post("/crm/xmlrpc/v1", content=body, headers=key)
        assert rpc.headers["x-keap-product-throttle-used"] == "2"
        missing = await keap.rest("GET", "/nothing/here", headers=key)
        assert missing.status_code == 404  # still a request: the gateway counted it
        assert missing.headers["x-keap-product-quota-used"] == "3"
        throttled = await keap.rest("GET", "/tags", headers=key)
        assert throttled.status_code == 429
        assert throttled.json()["fault"]["detail"]["errorcode"].endswith("SpikeArrestViolation")
        assert throttled.headers["retry-after"] == "1"
        keap.clock.t += 1
        assert (await keap.rest("GET", "/tags", headers=key)).status_code == 200
        assert list(keap.sim.stats()["quota_used"].values()) == [{"minute": 4, "day": 4}]


@pytest.mark.parametrize("mode", ["503", "404", "410", "off"])
async def test_xmlrpc_brownout_leaves_rest_up(keap: Keap, mode: str) -> None:
    keap.sim.config.xmlrpc_mode = mode  # type: ignore[assignment]
    body = dumps_call("DataService.echo", ["k", "x"])
    rpc = await keap.http.post("/crm/xmlrpc/v1", content=body, headers=keap.auth)
    assert rpc.status_code == (200 if mode == "off" else int(mode))
    contact = await keap.add()
    assert (await keap.ok("GET", f"/contacts/{contact['id']}"))["given_name"] == "Ada"


async def test_unknown_routes_wrong_methods_and_bad_ids(keap: Keap) -> None:
    body = await keap.error("GET", "/widgets", 404)
    assert body["status"] == "NOT_FOUND"
    wrong = await keap.rest("PUT", "/contacts/1")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, PATCH, DELETE"
    assert wrong.json()["status"] == "METHOD_NOT_ALLOWED"
    assert (await keap.rest("DELETE", "/contacts/model")).status_code == 405
    assert (await keap.error("GET", "/contacts/abc", 400))["status"] == "INVALID_ARGUMENT"
    missing = await keap.error("GET", "/contacts/999", 404)
    assert missing["details"] == [{"domain": "contact", "resource": "999"}]
    assert (await keap.error("POST", "/contacts", 400, content=b"{not json")) is not None
    assert (await keap.error("POST", "/contacts", 400, json=[1, 2])) is not None


async def test_injected_failures_hit_rest(keap: Keap) -> None:
    keap.sim.rest_endpoint.failures.push(["503"])
    failed = await keap.rest("GET", "/tags")
    assert failed.status_code == 503 and "fault" in failed.json()
    assert (await keap.rest("GET", "/tags")).status_code == 200


# --- contacts ---


FULL = {
    "given_name": "Grace",
    "middle_name": "B",
    "family_name": "Hopper",
    "prefix": "Rear Adm.",
    "suffix": "PhD",
    "preferred_name": "Amazing Grace",
    "job_title": "Computer Scientist",
    "website": "https://example.com",
    "contact_type": "Customer",
    "owner_id": "7",
    "leadsource_id": "3",
    "birth_date": "1906-12-09",
    "anniversary_date": "1930-06-15",
    "spouse_name": "Vincent",
    "time_zone": "America/New_York",
    "preferred_locale": "en_US",
    "referral_code": "R1",
    "email_addresses": [
        {"email": "grace@navy.mil", "field": "EMAIL1"},
        {"email": "grace@example.com", "field": "EMAIL3"},
    ],
    "phone_numbers": [{"number": "555-0100", "extension": "12", "type": "Work", "field": "PHONE2"}],
    "fax_numbers": [{"number": "555-0199", "type": "Home", "field": "FAX1"}],
    "addresses": [
        {
            "field": "BILLING",
            "line1": "1 Navy Way",
            "locality": "Arlington",
            "region_code": "US-VA",
            "postal_code": "22202",
            "zip_four": "1234",
            "country_code": "USA",
        }
    ],
    "company": {"id": "12", "company_name": "US Navy"},
    "custom_fields": [{"id": "3", "content": "9"}],
    "social_accounts": [{"type": "LINKED_IN", "name": "ghopper"}],
}


LEGACY_FIELDS = [
    *("FirstName", "Title", "Nickname", "Email", "EmailAddress3", "Phone2", "Phone2Ext"),
    *("StreetAddress1", "City", "State", "Country", "Company", "CompanyID", "_ShoeSize"),
    *("Birthday", "OwnerID"),
]


async def test_create_and_get_a_contact_with_every_kind_of_field(keap: Keap) -> None:
    created = await keap.add(FULL, fields="id,custom_fields,tag_ids")
    cid = created["id"]
    assert isinstance(cid, str) and cid.isdigit()
    assert created["tag_ids"] == []
    assert {"id": "3", "content": "9"} in created["custom_fields"]

    contact = await keap.ok("GET", f"/contacts/{cid}")
    for name in ("given_name", "family_name", "prefix", "owner_id", "birth_date", "website"):
        assert contact[name] == FULL[name]
    assert contact["create_time"] == contact["update_time"] == "2023-11-14T22:13:20.000Z"
    assert contact["email_addresses"] == [
        {
            "email": "grace@navy.mil",
            "field": "EMAIL1",
            "email_opt_status": "NON_MARKETABLE",
            "is_opt_in": False,
        },
        {
            "email": "grace@example.com",
            "field": "EMAIL3",
            "email_opt_status": "NON_MARKETABLE",
            "is_opt_in": False,
        },
    ]
    assert contact["phone_numbers"] == FULL["phone_numbers"]
    assert contact["fax_numbers"] == FULL["fax_numbers"]
    assert contact["addresses"] == FULL["addresses"]
    assert contact["company"] == FULL["company"]
    assert contact["social_accounts"] == FULL["social_accounts"]
    assert "custom_fields" not in contact  # optional: only when asked for

    picked = await keap.ok("GET", f"/contacts/{cid}", params={"fields": "given_name,company"})
    assert picked == {"given_name": "Grace", "company": FULL["company"]}
    assert (await keap.error("GET", f"/contacts/{cid}", 400, params={"fields": "shoe"})) != {}

    legacy = await keap.rpc(
        "ContactService.load",
        int(cid),
        LEGACY_FIELDS,
    )
    assert legacy == {
        "FirstName": "Grace",
        "Title": "Rear Adm.",
        "Nickname": "Amazing Grace",
        "Email": "grace@navy.mil",
        "EmailAddress3": "grace@example.com",
        "Phone2": "555-0100",
        "Phone2Ext": "12",
        "StreetAddress1": "1 Navy Way",
        "City": "Arlington",
        "State": "US-VA",
        "Country": "USA",  # stored as given (see rest_contact_model's docstring)
        "Company": "US Navy",
        "CompanyID": 12,
        "_ShoeSize": "9",
        "Birthday": datetime.datetime(1906, 12, 9),
        "OwnerID": 7,
    }
    row = keap.sim.db.tables["Contact"][int(cid)]
    assert (row["Fax1"], row["ZipFour1"], row["SpouseName"]) == ("555-0199", "1234", "Vincent")


async def test_create_validation(keap: Keap) -> None:
    async def refused(body: dict[str, Any]) -> str:
        message: str = (await keap.error("POST", "/contacts", 400, json=body))["message"]
        return message

    assert "at least one" in await refused({"given_name": "Nameless"})
    address = {"field": "BILLING", "line1": "x", "region_code": "US-AZ"}
    assert "country_code" in await refused({"addresses": [address]})
    assert "Unknown contact properties: first_name" in await refused({**ADA, "first_name": "x"})
    assert "longer than 40" in await refused({**ADA, "given_name": "x" * 41})
    email = {"email": "a@b.c", "field": "EMAIL9"}
    assert "Invalid email_addresses field" in await refused({"email_addresses": [email]})
    twice = [{"email": "a@b.c", "field": "EMAIL1"}, {"email": "d@b.c", "field": "EMAIL1"}]
    assert "twice" in await refused({"email_addresses": twice})
    assert "needs number" in await refused({"phone_numbers": [{"type": "Work"}]})
    assert "must be a string" in await refused({**ADA, "family_name": 5})
    assert "Invalid owner_id" in await refused({**ADA, "owner_id": "me"})
    assert "custom field" in await refused({**ADA, "custom_fields": [{"id": "99", "content": 1}]})
    assert "Invalid date" in await refused({**ADA, "birth_date": "09/12/1906"})
    assert "social" in await refused({**ADA, "social_accounts": [{"type": "MYSPACE"}]})
    assert keap.sim.db.tables["Contact"] == {}

    # Items without a field take the first free slot.
    loose = [{"email": "x@example.com"}, {"email": "y@example.com", "field": "EMAIL1"}]
    made = await keap.add({"email_addresses": loose}, fields="email_addresses")
    assert [(e["field"], e["email"]) for e in made["email_addresses"]] == [
        ("EMAIL1", "y@example.com"),
        ("EMAIL2", "x@example.com"),
    ]
    assert (await keap.add({"phone_numbers": [{"number": "555"}]}))["phone_numbers"] != []


async def test_one_data_set_for_xmlrpc_and_rest(keap: Keap) -> None:
    cid = await keap.rpc(
        "ContactService.add",
        {"FirstName": "Ada", "EmailAddress2": "ada@example.com", "Phone1": "555", "_Notes": "n"},
    )
    assert await keap.rpc("ContactService.addToGroup", cid, 104) is True
    contact = await keap.ok(
        "GET", f"/contacts/{cid}", params={"fields": "id,given_name,email_addresses,tag_ids"}
    )
    assert contact["id"] == str(cid)
    assert contact["email_addresses"][0]["field"] == "EMAIL2"
    assert contact["tag_ids"] == ["104"]

    patch = {"family_name": "King", "custom_fields": [{"id": "2", "content": "patched"}]}
    await keap.ok("PATCH", f"/contacts/{cid}", json=patch)
    assert await keap.rpc("ContactService.load", cid, ["LastName", "_Notes", "Groups"]) == {
        "LastName": "King",
        "_Notes": "patched",
        "Groups": "104",
    }
    found = await keap.rpc("ContactService.findByEmail", "ada@example.com", ["Id"])
    assert found == [{"Id": cid}]
    await keap.ok("DELETE", f"/contacts/{cid}", 204)
    with pytest.raises(Fault) as info:
        await keap.rpc("ContactService.load", cid, ["Id"])
    assert info.value.code == 5


async def test_patch_update_mask_replaces_arrays_whole(keap: Keap) -> None:
    emails = [
        {"email": "one@example.com", "field": "EMAIL1"},
        {"email": "two@example.com", "field": "EMAIL2"},
        {"email": "three@example.com", "field": "EMAIL3"},
    ]
    body = {**ADA, "email_addresses": emails, "custom_fields": [{"id": "1", "content": "L"}]}
    body["custom_fields"].append({"id": "3", "content": "10"})
    cid = (await keap.add(body))["id"]
    keap.clock.t += 60

    # Only EMAIL2 listed: EMAIL1 and EMAIL3 are removed ("Any item not listed here will be
    # removed if it already exists"). given_name is in the body but not the mask: untouched.
    patch = {"email_addresses": [{"email": "new@example.com", "field": "EMAIL2"}]}
    patch["given_name"] = "Ignored"
    after = await keap.ok(
        "PATCH",
        f"/contacts/{cid}",
        params={"update_mask": "email_addresses", "fields": "given_name,email_addresses"},
        json=patch,
    )
    assert after["given_name"] == "Ada"
    assert [(e["field"], e["email"]) for e in after["email_addresses"]] == [
        ("EMAIL2", "new@example.com")
    ]
    legacy = await keap.rpc(
        "ContactService.load", int(cid), ["Email", "EmailAddress2", "LastUpdated"]
    )
    assert legacy == {
        "EmailAddress2": "new@example.com",
        "LastUpdated": datetime.datetime(2023, 11, 14, 22, 14, 20),
    }

    # Repeated update_mask params and CSV mix; a masked property missing from the body clears.
    one_custom = {"custom_fields": [{"id": "3", "content": "11"}], "family_name": "X"}
    params = httpx.QueryParams([("update_mask", "custom_fields,middle_name"), ("update_mask", "x")])
    assert (await keap.error("PATCH", f"/contacts/{cid}", 400, params=params, json=one_custom))[
        "details"
    ] == [{"domain": "update_mask", "resource": "x"}]
    params = httpx.QueryParams([("update_mask", "custom_fields"), ("update_mask", "family_name")])
    patched = await keap.ok(
        "PATCH",
        f"/contacts/{cid}",
        params=params.add("fields", "family_name,custom_fields"),
        json={"custom_fields": [{"id": "3", "content": "11"}]},
    )
    assert "family_name" not in patched  # in the mask, absent from the body: cleared
    assert patched["custom_fields"] == [
        {"id": "1", "content": None},  # not listed: removed
        {"id": "2", "content": None},
        {"id": "3", "content": "11"},
    ]

    # An empty array removes every item.
    cleared = await keap.ok(
        "PATCH",
        f"/contacts/{cid}",
        params={"update_mask": "email_addresses", "fields": "email_addresses"},
        json={"email_addresses": []},
    )
    assert cleared == {"email_addresses": []}


async def test_patch_without_mask_updates_what_is_sent(keap: Keap) -> None:
    cid = (await keap.add({**FULL}))["id"]
    after = await keap.ok(
        "PATCH", f"/contacts/{cid}", json={"job_title": "Admiral", "suffix": None}
    )
    assert after["job_title"] == "Admiral" and "suffix" not in after
    assert after["given_name"] == "Grace" and len(after["email_addresses"]) == 2
    assert (await keap.error("PATCH", "/contacts/999", 404, json={"suffix": "x"}))["details"]
    bad_region = {"addresses": [{"field": "SHIPPING", "region_code": "US-AZ"}]}
    await keap.error("PATCH", f"/contacts/{cid}", 400, json=bad_region)
    await keap.ok("DELETE", f"/contacts/{cid}", 204)
    await keap.error("DELETE", f"/contacts/{cid}", 404)
    await keap.error("GET", f"/contacts/{cid}", 404)


async def test_duplicate_option_updates_the_match(keap: Keap) -> None:
    first = await keap.add()
    again = await keap.ok(
        "POST", "/contacts", 200, params={"duplicate_option": "Email"}, json={**ADA, "suffix": "Jr"}
    )
    assert again["id"] == first["id"] and again["suffix"] == "Jr"
    other_name = {**ADA, "given_name": "Augusta"}
    by_name = await keap.add(other_name, duplicate_option="EmailAndName")
    assert by_name["id"] != first["id"]
    same_name = await keap.ok(
        "POST", "/contacts", 200, params={"duplicate_option": "EmailAndName"}, json=other_name
    )
    assert same_name["id"] == by_name["id"]
    with_company = {**ADA, "company": {"company_name": "Analytical Engines"}}
    made = await keap.add(with_company, duplicate_option="EmailAndNameAndCompany")
    assert made["id"] not in (first["id"], by_name["id"])
    await keap.error("POST", "/contacts", 400, params={"duplicate_option": "Name"}, json=ADA)
    assert len(keap.sim.db.tables["Contact"]) == 3


async def test_list_contacts_pages_with_a_stable_cursor(keap: Keap) -> None:
    ids = [
        (await keap.add({**ADA, "given_name": f"C{n}", "email_addresses": []} | _email(n)))["id"]
        for n in range(5)
    ]
    first = await keap.ok("GET", "/contacts", params={"page_size": 2, "fields": "id"})
    assert [c["id"] for c in first["contacts"]] == ids[:2]
    token = first["next_page_token"]
    assert token
    # Deleting a record already seen does not shift the next page (an offset would skip one).
    await keap.ok("DELETE", f"/contacts/{ids[0]}", 204)
    second = await keap.ok(
        "GET", "/contacts", params={"page_size": 2, "page_token": token, "fields": "id"}
    )
    assert [c["id"] for c in second["contacts"]] == ids[2:4]
    third = await keap.ok(
        "GET",
        "/contacts",
        params={"page_size": 2, "page_token": second["next_page_token"], "fields": "id"},
    )
    assert [c["id"] for c in third["contacts"]] == ids[4:]
    assert third["next_page_token"] == ""

    everything = await keap.ok("GET", "/contacts", params={"order_by": "id desc", "fields": "id"})
    assert [c["id"] for c in everything["contacts"]] == ids[:0:-1]
    default = await keap.ok("GET", "/contacts", params={"page_size": 0})
    assert len(default["contacts"]) == 4 and set(default["contacts"][0]) >= {"id", "given_name"}

    for size in ("1001", "-1", "ten"):
        await keap.error("GET", "/contacts", 400, params={"page_size": size})
    await keap.error("GET", "/contacts", 400, params={"page_token": "garbage!"})
    other_query = {"page_token": token, "filter": "given_name==C1"}
    assert "filter" in (await keap.error("GET", "/contacts", 400, params=other_query))["message"]
    await keap.error("GET", "/contacts", 400, params={"order_by": "given_name"})
    await keap.error("GET", "/contacts", 400, params={"order_by": "id sideways"})

    keap.sim.config.rest_end_token = "absent"
    last = await keap.ok("GET", "/contacts", params={"page_size": 10})
    assert "next_page_token" not in last


def _email(n: int) -> dict[str, Any]:
    return {"email_addresses": [{"email": f"c{n}@example.com", "field": "EMAIL1"}]}


async def test_list_contacts_filters(keap: Keap) -> None:
    a = await keap.add(
        {
            "given_name": "Mary",
            "family_name": "Smith",
            "email_addresses": [{"email": "mary@work.com", "field": "EMAIL2"}],
            "phone_numbers": [{"number": "5551234", "field": "PHONE3"}],
            "addresses": [{"field": "SHIPPING", "locality": "Chandler", "country_code": "USA"}],
            "company": {"id": "5"},
            "custom_fields": [{"id": "1", "content": "L-17"}],
        }
    )
    keap.clock.t += 3600
    b = await keap.add({**ADA, "addresses": [{"field": "BILLING", "locality": "Chandler"}]})

    async def ids(filter_: str, **params: Any) -> list[str]:
        answer = await keap.ok("GET", "/contacts", params={"filter": filter_, **params})
        return [c["id"] for c in answer["contacts"]]

    assert await ids("email==MARY@work.com") == [a["id"]]  # any of EMAIL1..3, any case
    assert await ids("email==mary*") == [a["id"]]
    assert await ids("given_name==Mar*;family_name==smith") == [a["id"]]
    assert await ids("given_name==Mar*;family_name==Jones") == []
    assert await ids("city==Chan*") == [b["id"]]  # city is the billing address
    assert await ids("shipping_address_locality==Chandler") == [a["id"]]
    assert await ids("company_id==5") == [a["id"]]
    assert await ids(f"contact_id>{a['id']}") == [b["id"]]
    assert await ids(f"ids=={a['id']},{b['id']},999") == [a["id"], b["id"]]
    assert await ids("phone_number==555*;phone_fields==PHONE3") == [a["id"]]
    assert await ids("phone_number==555*;phone_fields==PHONE1") == []
    assert await ids("legacyid==L-17") == [a["id"]]  # a custom field, by field_name
    assert await ids("start_update_time==2023-11-14T23:00:00.000Z") == [b["id"]]
    assert await ids("end_update_time==2023-11-14T23:00:00Z;") == [a["id"]]
    assert await ids("", order_by="email") == [a["id"], b["id"]]  # no EMAIL1 sorts first
    assert await ids("", order_by="email desc") == [b["id"], a["id"]]

    for refused, word in [
        ("email==*@work.com", "Leading"),
        ("email==m*ry", "end"),
        ("job_title==CEO", "Invalid filter field"),
        ("given_name!=Mary", "Operator"),
        ("company_id==five", "number"),
        ("start_update_time==2023-11-14", "date-time"),
        ("phone_number==555*", "phone_fields"),
        ("phone_number==55*;phone_fields==PHONE1", "3 characters"),
        ("phone_number==555;phone_fields==FAX1", "PHONE"),
        ("given_name", "clause"),
    ]:
        body = await keap.error("GET", "/contacts", 400, params={"filter": refused})
        assert word in body["message"], (refused, body)


async def test_merge_contacts(keap: Keap) -> None:
    keep = await keap.add({**ADA, "family_name": ""})
    dup_body = {
        "given_name": "Augusta",
        "family_name": "King",
        "email_addresses": [{"email": "ada@old.example", "field": "EMAIL2"}],
    }
    dup = await keap.add(dup_body)
    await keap.rpc("ContactService.addToGroup", int(dup["id"]), 100)
    file_id = keap.sim.add_file(int(dup["id"]), "notes.txt", b"hi")
    merged = await keap.ok(
        "POST",
        "/contacts:merge",
        json={"contact_id": keep["id"], "duplicate_contact_id": dup["id"]},
    )
    assert merged["id"] == keep["id"]
    assert merged["given_name"] == "Ada" and merged["family_name"] == "King"
    assert [e["email"] for e in merged["email_addresses"]] == ["ada@example.com", "ada@old.example"]
    assert merged["tag_ids"] == ["100"]
    assert keap.sim.db.tables["FileBox"][file_id]["ContactId"] == int(keep["id"])
    await keap.error("GET", f"/contacts/{dup['id']}", 404)
    same = {"contact_id": keep["id"], "duplicate_contact_id": keep["id"]}
    await keap.error("POST", "/contacts:merge", 400, json=same)
    gone = {"contact_id": keep["id"], "duplicate_contact_id": dup["id"]}
    await keap.error("POST", "/contacts:merge", 404, json=gone)


async def test_contact_model_lists_custom_fields(keap: Keap) -> None:
    model = await keap.ok("GET", "/contacts/model")
    assert model["custom_fields"][2] == {
        "id": "3",
        "label": "Shoe Size",
        "field_name": "ShoeSize",
        "field_type": "TEXT",
        "record_type": "CONTACT",
        "options": [],
        "group_id": "1",
        "group_name": "Custom Fields",
    }
    assert "custom_fields" in model["optional_properties"]
    assert "given_name" not in model["optional_properties"]
    keap.sim.config.custom_fields = ("_ShoeSize", "_Added")  # ids stay with their fields
    ids = {
        f["field_name"]: f["id"] for f in (await keap.ok("GET", "/contacts/model"))["custom_fields"]
    }
    assert ids == {"ShoeSize": "3", "Added": "4"}


# --- tags ---


async def test_tags_and_categories_crud(keap: Keap) -> None:
    seeded = await keap.ok("GET", "/tags")
    assert [t["id"] for t in seeded["tags"]] == ["100", "102", "104", "106"]
    assert seeded["tags"][0] == {
        "id": "100",
        "name": "Newsletter",
        "description": "Subscribed to the newsletter",
        "category": {"id": "10"},
    }
    tag = await keap.ok("POST", "/tags", 201, json={"name": "VIP", "category": {"id": "12"}})
    assert tag["create_time"] == "2023-11-14T22:13:20.000Z" and tag["category"] == {"id": "12"}
    assert await keap.rpc("DataService.load", "ContactGroup", int(tag["id"]), ["GroupName"]) == {
        "GroupName": "VIP"
    }
    assert (await keap.error("POST", "/tags", 409, json={"name": "vip"}))["status"] == (
        "ALREADY_EXISTS"
    )
    await keap.error("POST", "/tags", 400, json={"description": "no name"})
    await keap.error("POST", "/tags", 400, json={"name": "X", "category": {"id": "99"}})
    keap.clock.t += 5
    patched = await keap.ok(
        "PATCH",
        f"/tags/{tag['id']}",
        params={"update_mask": "description,category"},
        json={"name": "Ignored", "description": "Very important"},
    )
    assert patched["name"] == "VIP" and "category" not in patched
    assert patched["update_time"] == "2023-11-14T22:13:25.000Z"
    assert (await keap.ok("GET", f"/tags/{tag['id']}")) == patched

    def names(answer: dict[str, Any]) -> list[str]:
        return [t["name"] for t in answer["tags"]]

    params = {"filter": "category_id==NONE"}
    assert names(await keap.ok("GET", "/tags", params=params)) == ["VIP"]
    params = {"filter": "tag_ids==100,104", "order_by": "name desc"}
    assert names(await keap.ok("GET", "/tags", params=params)) == ["Newsletter", "Customer"]
    params = {"filter": "since_create_time==2023-01-01T00:00:00.000Z"}
    assert names(await keap.ok("GET", "/tags", params=params)) == ["VIP"]
    await keap.error("GET", "/tags", 400, params={"filter": "color==red"})
    await keap.ok("DELETE", f"/tags/{tag['id']}", 204)
    await keap.error("GET", f"/tags/{tag['id']}", 404)

    category = await keap.ok("POST", "/tags/categories", 201, json={"name": "Events"})
    listed = await keap.ok("GET", "/tags/categories", params={"order_by": "name"})
    assert [c["name"] for c in listed["tag_categories"]] == ["Events", "Interests", "Status"]
    assert listed["next_page_token"] == ""
    await keap.error("POST", "/tags/categories", 409, json={"name": "status"})
    renamed = await keap.ok("PATCH", f"/tags/categories/{category['id']}", json={"name": "Meetups"})
    assert renamed["name"] == "Meetups"
    assert (await keap.ok("GET", f"/tags/categories/{category['id']}"))["name"] == "Meetups"
    await keap.ok("DELETE", "/tags/categories/10", 204)
    assert "category" not in await keap.ok("GET", "/tags/100")  # tags outlive their category


async def test_apply_and_remove_tags(keap: Keap) -> None:
    a = (await keap.add())["id"]
    keap.clock.t += 10
    b = (await keap.add({"given_name": "Bo", "phone_numbers": [{"number": "555"}]}))["id"]
    applied = await keap.ok(
        "POST", "/tags/100/contacts:applyTags", json={"contact_ids": [a, b, "999"]}
    )
    assert applied == {"results": {a: "SUCCESS", b: "SUCCESS", "999": "CONTACT_DOES_NOT_EXIST"}}
    assert await keap.rpc("ContactService.load", int(a), ["Groups"]) == {"Groups": "100"}
    keap.clock.t += 10
    await keap.rpc("ContactService.addToGroup", int(a), 104)

    tags = await keap.ok("GET", f"/contacts/{a}/tags")
    assert [(t["tag"]["id"], t["applied_time"]) for t in tags["tags"]] == [
        ("100", "2023-11-14T22:13:30.000Z"),
        ("104", "2023-11-14T22:13:40.000Z"),
    ]
    assert tags["tags"][0]["tag"]["name"] == "Newsletter"
    recent = {"filter": "since_applied_time==2023-11-14T22:13:35.000Z"}
    assert len((await keap.ok("GET", f"/contacts/{a}/tags", params=recent))["tags"]) == 1
    await keap.error("GET", "/contacts/999/tags", 404)

    tagged = await keap.ok("GET", "/tags/100/contacts", params={"order_by": "given_name desc"})
    assert tagged["contacts"] == [
        {"id": b, "given_name": "Bo", "applied_time": "2023-11-14T22:13:30.000Z"},
        {
            "id": a,
            "email": "ada@example.com",
            "given_name": "Ada",
            "family_name": "Lovelace",
            "applied_time": "2023-11-14T22:13:30.000Z",
        },
    ]
    assert await keap.ok("GET", "/tags/100/contacts/count") == {"count": 2}
    no_email = {"filter": "email==NONE"}
    assert await keap.ok("GET", "/tags/100/contacts/count", params=no_email) == {"count": 1}
    await keap.error("GET", "/tags/100/contacts", 400, params={"filter": "city==x"})

    await keap.ok("POST", "/tags/100/contacts:removeTags", 204, json={"contact_ids": [a, "999"]})
    assert await keap.rpc("ContactService.load", int(a), ["Groups"]) == {"Groups": "104"}
    assert await keap.rpc("DataService.count", "ContactGroupAssign", {"GroupId": 100}) == 1
    await keap.error("POST", "/tags/999/contacts:applyTags", 404, json={"contact_ids": [a]})
    for body in ({"contact_ids": []}, {"contact_ids": ["x"]}, {"ids": [a]}, {}):
        await keap.error("POST", "/tags/100/contacts:applyTags", 400, json=body)


# --- files ---


async def test_upload_and_download_files(keap: Keap) -> None:
    cid = (await keap.add())["id"]
    form = {"file_name": "notes.txt", "file_association": "CONTACT", "contact_id": cid}
    upload = {"file": ("ignored.txt", b"hello", "text/plain")}
    meta = await keap.ok("POST", "/files", 201, data={**form, "is_public": "true"}, files=upload)
    assert meta == {
        "id": meta["id"],
        "file_name": "notes.txt",
        "file_size": 5,
        "is_public": True,
        "contact_id": cid,
        "category": "DOCUMENTS",
        "file_box_type": "CONTACT",
        "created_time": "2023-11-14T22:13:20.000Z",
        "updated_time": "2023-11-14T22:13:20.000Z",
    }
    assert isinstance(meta["id"], str)
    legacy = await keap.rpc("FileService.getFile", int(meta["id"]))
    assert base64.b64decode(legacy) == b"hello"
    assert await keap.ok("GET", f"/files/{meta['id']}") == meta

    rpc_id = await keap.rpc("FileService.uploadFile", "raw.bin", b"\x00\x01")
    raw = await keap.rest("GET", f"/files/{rpc_id}:data")
    assert raw.status_code == 200 and raw.content == b"\x00\x01"
    assert raw.headers["content-type"] == "application/octet-stream"

    no_contact = {"file_name": "a.txt", "file_association": "CONTACT"}
    await keap.error("POST", "/files", 400, data=no_contact, files=upload)
    await keap.error("POST", "/files", 404, data={**no_contact, "contact_id": "999"}, files=upload)
    await keap.error("POST", "/files", 400, data={**form, "file_association": "X"}, files=upload)
    await keap.error("POST", "/files", 400, data=form)  # no file part
    await keap.error("POST", "/files", 400, json={"file_name": "a.txt"})
    await keap.ok("DELETE", f"/files/{meta['id']}", 204)
    await keap.error("GET", f"/files/{meta['id']}:data", 404)


async def test_thirty_megabyte_file_both_ways(keap: Keap) -> None:
    data = bytes(range(256)) * (30 * 1024 * 1024 // 256)
    started = time.perf_counter()
    form = {"file_name": "big.pdf", "file_association": "USER"}
    meta = await keap.ok("POST", "/files", 201, data=form, files={"file": ("big.pdf", data)})
    assert meta["file_size"] == len(data) and "contact_id" not in meta
    assert keap.sim.db.files[int(meta["id"])] == data
    response = await keap.rest("GET", f"/files/{meta['id']}:data")
    assert response.content == data
    assert int(response.headers["content-length"]) == len(data)
    assert time.perf_counter() - started < 5


# --- email status, goals, user info, settings ---


async def test_email_opt_status(keap: Keap) -> None:
    cid = (await keap.add())["id"]
    path = "/emailAddresses/ada@example.com/status"
    assert await keap.ok("GET", path) == {
        "email": "ada@example.com",
        "opted_in": False,
        "status": "NON_MARKETABLE",
        "create_time": "2023-11-14T22:13:20.000Z",
    }
    opted = await keap.ok("PATCH", path, json={"opted_in": True, "reason": "Asked nicely"})
    assert (opted["opted_in"], opted["status"]) == (True, "SINGLE_OPT_IN")
    out = await keap.ok("PATCH", path, json={"opted_in": False, "reason": "Unsubscribed"})
    assert (out["opted_in"], out["status"]) == (False, "MANUAL")
    back = await keap.ok("PATCH", path, json={"opted_in": True, "reason": "Changed mind"})
    assert back["status"] == "SINGLE_OPT_IN"
    contact = await keap.ok("GET", f"/contacts/{cid}", params={"fields": "email_addresses"})
    assert contact["email_addresses"][0]["is_opt_in"] is True

    now = datetime.datetime(2023, 11, 15)
    set_email_status(keap.sim.db, "ADA@example.com", "HARD_BOUNCE", now)
    stuck = await keap.ok("PATCH", path, json={"opted_in": True, "reason": "Please"})
    assert (stuck["opted_in"], stuck["status"]) == (False, "HARD_BOUNCE")
    out = await keap.ok("PATCH", path, json={"opted_in": False, "reason": "Bye"})
    assert out["status"] == "HARD_BOUNCE"

    await keap.error("GET", "/emailAddresses/nobody@example.com/status", 404)
    await keap.error("PATCH", path, 400, json={"opted_in": "yes", "reason": "x"})
    await keap.error("PATCH", path, 400, json={"opted_in": True})
    keap.sim.config.rest_unknown_email = "non_marketable"
    unknown = await keap.ok("GET", "/emailAddresses/nobody@example.com/status")
    assert unknown["status"] == "NON_MARKETABLE"

    reason = [{"email": "eve@example.com", "field": "EMAIL1", "opt_in_reason": "Signed up"}]
    await keap.add({"email_addresses": reason})
    eve = await keap.ok("GET", "/emailAddresses/eve@example.com/status")
    assert (eve["opted_in"], eve["status"]) == (True, "SINGLE_OPT_IN")


async def test_achieve_goal(keap: Keap) -> None:
    cid = (await keap.add())["id"]
    goal = {"integration": "keyshim", "call_name": "purchase", "contact_id": int(cid)}
    answer = await keap.ok("POST", "/automations/goals/achieve", json=goal)
    assert answer == {
        "results": [
            {
                "success": True,
                "message": "Goal achieved",
                "automation_id": 40,
                "goal_id": 5,
                "flow_start_results": [
                    {"success": True, "message": "Started", "flow_id": 41},
                    {"success": True, "message": "Started", "flow_id": 42},
                ],
                "flow_stop_results": [],
            }
        ]
    }
    by_id = {"automation_id": 30, "goal_id": 3, "contact_id": cid}
    assert (await keap.ok("POST", "/automations/goals/achieve", json=by_id))["results"][0][
        "success"
    ]
    assert keap.sim.rest_endpoint.store.goals_achieved == [
        ("keyshim", "purchase", int(cid)),
        ("keyshim", "signup", int(cid)),
    ]
    nothing = await keap.ok("POST", "/automations/goals/achieve", json={**goal, "call_name": "x"})
    assert nothing["results"][0]["success"] is False
    await keap.error("POST", "/automations/goals/achieve", 404, json={**goal, "contact_id": 999})
    await keap.error("POST", "/automations/goals/achieve", 400, json={**goal, "goal_id": 3})
    await keap.error("POST", "/automations/goals/achieve", 400, json={"contact_id": int(cid)})


async def test_user_info_and_settings(keap: Keap) -> None:
    user = await keap.ok("GET", "/oauth/connect/userinfo")
    assert set(user) == {
        "email",
        "sub",
        "id",
        "keap_id",
        "given_name",
        "family_name",
        "is_admin",
        "tenant_id",
    }
    assert user["tenant_id"] == "ab123"
    default = await keap.ok("GET", "/settings/applications:getConfiguration")
    assert list(default) == ["application"]
    params = httpx.QueryParams([("fields", "contact"), ("fields", "ecommerce")])
    settings = await keap.ok("GET", "/settings/applications:getConfiguration", params=params)
    legacy = await keap.rpc("DataService.getAppSetting", "Contact", "optiontypes")
    assert settings["contact"]["contact_types"] == legacy
    assert settings["contact"]["phone_types"] == "Work,Home,Mobile,Other"
    assert settings["ecommerce"]["credit_card_types"].startswith("Visa")
    assert settings["ecommerce"]["default_charge_max_retry_attempts"] == 3  # StrictInt
    assert "invoice" not in settings
    assert await keap.ok("GET", "/settings/applications:isEnabled") == {"isEnabled": True}
    params = httpx.QueryParams({"fields": "bogus"})
    await keap.error("GET", "/settings/applications:getConfiguration", 400, params=params)
    types = await keap.ok("GET", "/settings/contactOptionTypes")
    assert types["option_types"][0] == "Prospect"
