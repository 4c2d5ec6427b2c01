"""The simulator's product-category assignments, contact social accounts and reports: REST v2
(shaped like the SDK models) and the legacy calls over the same rows."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shim.simulator import SimConfig
from shim.xmlrpc import Fault
from tests.simulator.test_rest_side import ADA, Keap, running

pytestmark = pytest.mark.anyio

#: Seeded: categories 3 and 5, products 21-23, product 21 in category 3 (assignment row 1).
BOOKS, COURSES = 3, 5


@pytest.fixture
async def keap() -> AsyncIterator[Keap]:
    async with running(SimConfig()) as k:
        yield k


async def test_assigned_products_are_the_assignment_rows(keap: Keap) -> None:
    listed = await keap.ok("GET", "/productCategories/assignedProducts")
    assert listed["assigned_product_categories"] == [
        {"product_category_id": "3", "product_ids": ["21"]}
    ]
    await keap.ok("POST", "/productCategories/3:assignProducts", 204,
                  json={"product_ids": ["21", "22"]})  # fmt: skip
    await keap.ok("POST", "/productCategories/5:assignProducts", 204, json={"product_ids": ["22"]})
    rows = await keap.rpc("DataService.query", "ProductCategoryAssign", 10, 0, {},
                          ["Id", "ProductCategoryId", "ProductId"])  # fmt: skip
    assert rows == [
        {"Id": 1, "ProductCategoryId": 3, "ProductId": 21},
        {"Id": 2, "ProductCategoryId": 3, "ProductId": 22},
        {"Id": 3, "ProductCategoryId": 5, "ProductId": 22},
    ]
    # the full list replaces the category's: 21 goes, 22 keeps its row
    await keap.ok("POST", "/productCategories/3:assignProducts", 204, json={"product_ids": ["22"]})
    ids = await keap.rpc("DataService.query", "ProductCategoryAssign", 10, 0,
                         {"ProductCategoryId": 3}, ["Id"])  # fmt: skip
    assert ids == [{"Id": 2}]
    # a legacy add shows through REST; a product filter selects the categories holding it
    await keap.rpc("DataService.add", "ProductCategoryAssign",
                   {"ProductCategoryId": 5, "ProductId": 23})  # fmt: skip
    found = await keap.ok("GET", "/productCategories/assignedProducts",
                          params={"filter": "product_ids==23"})  # fmt: skip
    assert found["assigned_product_categories"] == [
        {"product_category_id": "5", "product_ids": ["22", "23"]}
    ]
    paged = await keap.ok(
        "GET",
        "/productCategories/assignedProducts",
        params={"page_size": "1", "order_by": "product_category_id desc"},
    )
    assert [c["product_category_id"] for c in paged["assigned_product_categories"]] == ["5"]
    assert paged["next_page_token"]


async def test_assign_products_checks(keap: Keap) -> None:
    assign = "/productCategories/{}:assignProducts"
    await keap.error("POST", assign.format(99), 404, json={"product_ids": []})
    await keap.error("POST", assign.format(3), 400, json={"product_ids": ["9"]})
    await keap.error("POST", assign.format(3), 400, json={})
    await keap.error("GET", "/productCategories/assignedProducts", 400,
                     params={"filter": "name==x"})  # fmt: skip
    await keap.ok("DELETE", "/products/21", 204)  # its assignments go with it
    listed = await keap.ok("GET", "/productCategories/assignedProducts")
    assert listed["assigned_product_categories"] == []


async def test_social_accounts_are_the_contacts_rows(keap: Keap) -> None:
    created = await keap.add({**ADA, "social_accounts": [{"type": "FACEBOOK", "name": "ada"}]})
    cid = int(created["id"])
    fields = ["Id", "ContactId", "AccountName", "AccountType", "DateCreated"]
    rows = await keap.rpc("DataService.query", "SocialAccount", 10, 0, {"ContactId": cid}, fields)
    assert [(r["Id"], r["AccountName"], r["AccountType"]) for r in rows] == [(1, "ada", "Facebook")]
    await keap.rpc(
        "DataService.add",
        "SocialAccount",
        {"ContactId": cid, "AccountType": "linkedin", "AccountName": "ada-l"},
    )
    await keap.rpc(
        "DataService.add",
        "SocialAccount",
        {"ContactId": cid, "AccountType": "MySpace", "AccountName": "old"},
    )
    contact = await keap.ok("GET", f"/contacts/{cid}", params={"fields": "social_accounts"})
    assert contact["social_accounts"] == [
        {"type": "FACEBOOK", "name": "ada"},
        {"type": "LINKED_IN", "name": "ada-l"},
        {"type": "SOCIAL_ACCOUNT_TYPE_UNSPECIFIED", "name": "old"},
    ]
    # REST replaces the array: equal items keep their rows, a renamed one keeps its Id
    keap.clock.t += 60
    body = {"social_accounts": [{"type": "LINKED_IN", "name": "ada-l"},
                                {"type": "FACEBOOK", "name": "ada.l"},
                                {"type": "TWITTER", "name": "ada_t"}]}  # fmt: skip
    await keap.ok("PATCH", f"/contacts/{cid}", json=body,
                  params={"update_mask": "social_accounts"})  # fmt: skip
    rows = await keap.rpc(
        "DataService.query",
        "SocialAccount",
        10,
        0,
        {"ContactId": cid},
        ["Id", "AccountName", "AccountType", "LastUpdated", "DateCreated"],
    )
    assert [(r["Id"], r["AccountName"], r["AccountType"]) for r in rows] == [
        (1, "ada.l", "Facebook"), (2, "ada-l", "linkedin"), (4, "ada_t", "Twitter")
    ]  # fmt: skip
    assert rows[0]["LastUpdated"] > rows[0]["DateCreated"] == rows[1]["LastUpdated"]
    await keap.error("PATCH", f"/contacts/{cid}", 400, params={"update_mask": "social_accounts"},
                     json={"social_accounts": [{"type": "MYSPACE"}]})  # fmt: skip
    await keap.ok("DELETE", f"/contacts/{cid}", 204)
    assert await keap.rpc("DataService.count", "SocialAccount", {}) == 0


async def test_reports_both_ways(keap: Keap) -> None:
    for name in ("Ada", "Bea"):
        await keap.add({**ADA, "given_name": name})
    await keap.ok("POST", "/tags/104/contacts:applyTags", json={"contact_ids": ["2"]})
    listed = await keap.ok("GET", "/reporting/reports", params={"filter": "name==customers"})
    assert listed["reports"] == [{
        "id": "33", "name": "Customers", "created_time": "2025-06-01T09:00:00.000Z",
        "updated_time": "2025-06-01T09:00:00.000Z", "user_ids": ["1"],
    }]  # fmt: skip
    everyone = await keap.ok("GET", "/reporting/reports/31")
    assert everyone["user_ids"] == ["ALL_USERS"]
    model = await keap.ok("GET", "/reporting/reports/33/model")
    assert model["fields"][-1] == {"name": "Groups", "label": "Tags"}
    run = await keap.ok("POST", "/reporting/reports/31:run", json={"page_size": 1})
    assert run["results"] == [{"columns": [
        {"field_name": "Id", "value": "1"}, {"field_name": "FirstName", "value": "Ada"},
        {"field_name": "LastName", "value": "Lovelace"},
        {"field_name": "Email", "value": "ada@example.com"}, {"field_name": "City"},
    ]}]  # fmt: skip
    following = {"page_size": 1, "page_token": run["page_token"], "fields": "Email,FirstName"}
    second = await keap.ok("POST", "/reporting/reports/31:run", json=following)
    assert second == {"results": [{"columns": [
        {"field_name": "FirstName", "value": "Bea"},
        {"field_name": "Email", "value": "ada@example.com"},
    ]}], "page_token": ""}  # fmt: skip
    await keap.error("POST", "/reporting/reports/31:run", 400, json={"fields": "Shoe"})
    await keap.error("POST", "/reporting/reports/99:run", 404, json={})
    # the legacy side: rows keyed by column, the asked order, pages of 1000 from 0
    legacy = await keap.rpc("SearchService.getSavedSearchResultsAllFields", 33, 1, 0)
    assert legacy == [{"Id": "2", "FirstName": "Bea", "LastName": "Lovelace",
                       "Email": "ada@example.com", "Groups": "104"}]  # fmt: skip
    assert await keap.rpc("SearchService.getSavedSearchResultsAllFields", 33, 1, 1) == []
    picked = await keap.rpc("SearchService.getSavedSearchResults", 31, 2, 0, ["Email", "Id"])
    assert picked == [
        {"Email": "ada@example.com", "Id": "1"},
        {"Email": "ada@example.com", "Id": "2"},
    ]
    columns = await keap.rpc("SearchService.getAllReportColumns", 31, 1)
    assert columns["FirstName"] == "First Name"
    for call in (("getSavedSearchResultsAllFields", 33, 2, 0), ("getAllReportColumns", 99, 1)):
        with pytest.raises(Fault) as fault:
            await keap.rpc(f"SearchService.{call[0]}", *call[1:])
        assert fault.value.code == 5
