"""Equivalence (route ``xmlrpc`` vs route ``rest``) of the tables REST keeps inside another
resource, ProductCategoryAssign and SocialAccount, and of SearchService's saved searches.

Where the translation is documented to differ (the stand-in Ids of both tables, the spelling
of AccountType, what REST refuses), each route's answer is checked on its own; everything
else must be identical, faults included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from shim.rest import saved_searches
from shim.settings import Settings
from shim.simulator import reports
from shim.store.sqlite import SqliteStore
from tests.support.rest_pair import Fault, Pair, open_pair

pytestmark = pytest.mark.anyio

NOT_FOUND = Fault(5, "RecordNotFound")
NO_FIELD_ACCESS = Fault(8, "NoFieldAccess")
NO_FIELD = Fault(10, "NoFieldFound")
NO_FIELDS = Fault(11, "NoFields")
INVALID = Fault(12, "InvalidParameter")
#: Seeded: categories 3 (Books) and 5 (Courses); products 21, 22, 23; product 21 in category 3
#: (legacy row 1). Saved searches 31 (every user) and 33 (user 1; contacts tagged 104).
BOOKS, COURSES, NOTEBOOK, COURSE, POSTER = 3, 5, 21, 22, 23
ASSIGN = ["ProductCategoryId", "ProductId"]
SOCIAL = ["ContactId", "AccountName", "AccountType"]


@pytest.fixture
async def pair(settings: Settings, store: SqliteStore) -> AsyncIterator[Pair]:
    async with open_pair(replace(settings), store, {}) as p:
        yield p


async def both(pair: Pair, method: str, *params: Any) -> tuple[Any, Any]:
    """Each route's answer, for the cases where they are documented to differ."""
    legacy = await pair.call("xmlrpc", method, *params)
    modern = await pair.call("rest", method, *params)
    return legacy, modern


async def refused(pair: Pair, method: str, *params: Any) -> str:
    """Route ``rest`` answers [NoRestTranslation]; returns its message."""
    answer = await pair.call("rest", method, *params)
    assert answer[0] == "fault" and answer[1] == 112, answer
    text: str = answer[2]
    assert text.startswith("[NoRestTranslation]")
    return text


# --- ProductCategoryAssign --------------------------------------------------------------------


async def test_product_category_assign_session(pair: Pair) -> None:
    """What a shop sync does: put a new product in a category, read the categories back."""
    rows = await pair.same("DataService.query", "ProductCategoryAssign", 10, 0, {}, ASSIGN)
    assert rows == [{"ProductCategoryId": BOOKS, "ProductId": NOTEBOOK}]
    # the Id: legacy's row id through XML-RPC, the stand-in category * 100000 + product
    legacy, modern = await both(pair, "DataService.query", "ProductCategoryAssign", 10, 0, {},
                                ["Id"])  # fmt: skip
    assert (legacy, modern) == (("ok", [{"Id": 1}]), ("ok", [{"Id": 300021}]))
    for category, product, row in ((BOOKS, COURSE, 2), (COURSES, COURSE, 3)):
        data = {"ProductCategoryId": category, "ProductId": product}
        legacy, modern = await both(pair, "DataService.add", "ProductCategoryAssign", data)
        assert (legacy, modern) == (("ok", row), ("ok", category * 100_000 + product))
    everything = await pair.same("DataService.query", "ProductCategoryAssign", 10, 0, {}, ASSIGN)
    assert everything == [
        {"ProductCategoryId": BOOKS, "ProductId": NOTEBOOK},
        {"ProductCategoryId": BOOKS, "ProductId": COURSE},
        {"ProductCategoryId": COURSES, "ProductId": COURSE},
    ]
    for query in (
        {"ProductCategoryId": BOOKS},
        {"ProductId": COURSE},
        {"ProductId": "~>~21"},
        {"ProductCategoryId": 99},
        {"ProductCategoryId": COURSES, "ProductId": 21},
    ):
        await pair.same("DataService.query", "ProductCategoryAssign", 10, 0, query, ASSIGN)
        await pair.same("DataService.count", "ProductCategoryAssign", query)  # fmt: skip
    await pair.same("DataService.findByField", "ProductCategoryAssign", 10, 0, "ProductId",
                    COURSE, ASSIGN)  # fmt: skip
    await pair.same("DataService.query", "ProductCategoryAssign", 1, 1, {}, ASSIGN,
                    "ProductId", False)  # fmt: skip
    assert await pair.same("DataService.count", "ProductCategoryAssign", {}) == 3
    # load and delete by each route's own Id
    legacy, modern = (await pair.call("xmlrpc", "DataService.load", "ProductCategoryAssign", 2,
                                      ASSIGN),
                      await pair.call("rest", "DataService.load", "ProductCategoryAssign", 300022,
                                      ASSIGN))  # fmt: skip
    assert legacy == modern == ("ok", {"ProductCategoryId": BOOKS, "ProductId": COURSE})
    assert await pair.call("xmlrpc", "DataService.delete", "ProductCategoryAssign", 2) == (
        "ok", True)  # fmt: skip
    assert await pair.call("rest", "DataService.delete", "ProductCategoryAssign", 300022) == (
        "ok", True)  # fmt: skip
    await pair.same("DataService.query", "ProductCategoryAssign", 10, 0, {}, ASSIGN)
    assert await pair.same("DataService.count", "ProductCategoryAssign", {}) == 2


@pytest.mark.parametrize(
    ("method", "params", "fault"),
    [
        ("DataService.query", (10, 0, {"Shelf": 1}, ["Id"]), NO_FIELD),
        ("DataService.query", (10, 0, {}, ["Shelf"]), NO_FIELD),
        ("DataService.count", ({"ProductId": "many"},), INVALID),
        ("DataService.add", ({"Id": 7, "ProductId": 22},), NO_FIELD_ACCESS),
        ("DataService.add", ({"ProductId": "twenty"},), INVALID),
        ("DataService.load", (999, ["Id"]), NOT_FOUND),
        ("DataService.load", (500021, ["ProductId"]), NOT_FOUND),  # no such row either way
        ("DataService.load", (1, ["Shelf"]), NO_FIELD),
        ("DataService.delete", (999,), NOT_FOUND),
        ("DataService.delete", (500021,), NOT_FOUND),
        ("DataService.query", (0, 0, {}, ["Id"]), INVALID),
    ],
)
async def test_product_category_assign_faults(
    pair: Pair, method: str, params: tuple[Any, ...], fault: Fault
) -> None:
    await pair.same(method, "ProductCategoryAssign", *params, expect=fault)


async def test_product_category_assign_differences(pair: Pair) -> None:
    """Documented: an update is refused; REST needs both ids and checks them; a pair already
    assigned gets no second row (its stand-in Id)."""
    before = pair.rest_requests()
    text = await refused(pair, "DataService.update", "ProductCategoryAssign", 300021,
                         {"ProductId": COURSE})  # fmt: skip
    assert "delete the row and add the new pair" in text
    assert "give both" in await refused(pair, "DataService.add", "ProductCategoryAssign",
                                        {"ProductCategoryId": BOOKS})  # fmt: skip
    assert pair.rest_requests() == before  # refused before any request
    unknown = {"ProductCategoryId": 99, "ProductId": NOTEBOOK}
    legacy, modern = await both(pair, "DataService.add", "ProductCategoryAssign", unknown)
    assert legacy == ("ok", 2) and modern[:2] == ("fault", 5)  # REST: no category 99
    again = {"ProductCategoryId": BOOKS, "ProductId": NOTEBOOK}
    assert await pair.call("rest", "DataService.add", "ProductCategoryAssign", again) == (
        "ok", 300021)  # fmt: skip
    assert await pair.call("rest", "DataService.count", "ProductCategoryAssign", {}) == ("ok", 1)


# --- SocialAccount --------------------------------------------------------------------------


async def _contact(pair: Pair) -> int:
    contact = await pair.same("ContactService.add", {"FirstName": "Ada", "Email": "a@ex.com"})
    assert contact == 1
    return int(contact)


async def test_social_account_session(pair: Pair) -> None:
    """What a profile sync does: find the contact's accounts, add or update by type."""
    contact = await _contact(pair)
    assert await pair.same("DataService.query", "SocialAccount", 10, 0, {"ContactId": contact},
                           SOCIAL) == []  # fmt: skip
    added = []
    for kind, name, row in (("Facebook", "ada", 1), ("LinkedIn", "ada-l", 2),
                            ("Facebook", "ada.page", 3)):  # fmt: skip
        data = {"ContactId": contact, "AccountType": kind, "AccountName": name}
        legacy, modern = await both(pair, "DataService.add", "SocialAccount", data)
        assert legacy == ("ok", row)
        added.append(modern[1])
    # the stand-in: ContactId * 100 + 10 * type code + rank among that type
    assert added == [110, 120, 111]
    rows = await pair.same("DataService.query", "SocialAccount", 10, 0, {"ContactId": contact},
                           SOCIAL)  # fmt: skip
    assert [r["AccountType"] for r in rows] == ["Facebook", "LinkedIn", "Facebook"]
    for query in (
        {"ContactId": contact, "AccountType": "LinkedIn"},
        {"ContactId": contact, "AccountName": "ada%"},
        {"ContactId": contact, "AccountType": "facebook"},
        {"ContactId": 99},
    ):
        await pair.same("DataService.query", "SocialAccount", 10, 0, query, SOCIAL)
        await pair.same("DataService.count", "SocialAccount", query)  # fmt: skip
    await pair.same("DataService.findByField", "SocialAccount", 10, 0, "ContactId", contact,
                    ["AccountName"])  # fmt: skip
    await pair.same("DataService.query", "SocialAccount", 2, 0, {"ContactId": contact}, SOCIAL,
                    "AccountName", False)  # fmt: skip
    # each route's Id names the same account: update, load, delete through it
    for route, facebook, linkedin in (("xmlrpc", 1, 2), ("rest", 110, 120)):
        change = {"AccountName": "ada.lovelace"}
        assert await pair.call(route, "DataService.update", "SocialAccount", facebook,
                               change) == ("ok", facebook)  # fmt: skip
        assert await pair.call(route, "DataService.load", "SocialAccount", linkedin,
                               SOCIAL) == ("ok", {"ContactId": contact, "AccountName": "ada-l",
                                                  "AccountType": "LinkedIn"})  # fmt: skip
        assert await pair.call(route, "DataService.delete", "SocialAccount", linkedin) == (
            "ok", True)  # fmt: skip
    rows = await pair.same("DataService.query", "SocialAccount", 10, 0, {"ContactId": contact},
                           SOCIAL)  # fmt: skip
    assert [r["AccountName"] for r in rows] == ["ada.lovelace", "ada.page"]
    # the second Facebook account keeps its stand-in while the first stays
    assert await pair.call("rest", "DataService.load", "SocialAccount", 111, ["AccountName"]) == (
        "ok", {"AccountName": "ada.page"})  # fmt: skip


@pytest.mark.parametrize(
    ("method", "params", "fault"),
    [
        ("DataService.query", (10, 0, {"ContactId": 1}, ["Handle"]), NO_FIELD),
        ("DataService.query", (10, 0, {"Handle": "x"}, ["Id"]), NO_FIELD),
        ("DataService.add", ({"ContactId": 1, "DateCreated": "2026-01-01"},), NO_FIELD_ACCESS),
        ("DataService.add", ({"ContactId": "one"},), INVALID),
        ("DataService.update", (999, {"AccountName": "x"}), NOT_FOUND),
        ("DataService.update", (1, {"Id": 5}), NO_FIELD_ACCESS),
        ("DataService.load", (999, ["AccountName"]), NOT_FOUND),
        ("DataService.delete", (999,), NOT_FOUND),
        ("DataService.count", ({"ContactId": "~>~x"},), INVALID),
    ],
)
async def test_social_account_faults(
    pair: Pair, method: str, params: tuple[Any, ...], fault: Fault
) -> None:
    await _contact(pair)
    await pair.same(method, "SocialAccount", *params, expect=fault)


async def test_social_account_differences(pair: Pair) -> None:
    """Documented: AccountType reads back in REST's spelling; REST needs the contact, knows
    only its types, has no dates; a contact shows accounts added either way."""
    contact = await _contact(pair)
    data = {"ContactId": contact, "AccountType": "twitter", "AccountName": "ada_t"}
    assert (await both(pair, "DataService.add", "SocialAccount", data))[1] == ("ok", 130)
    legacy, modern = await both(
        pair,
        "DataService.query",
        "SocialAccount",
        10,
        0,
        {"ContactId": contact},
        ["AccountType", "DateCreated"],
    )
    assert legacy[1][0]["AccountType"] == "twitter" and "DateCreated" in legacy[1][0]
    assert modern == ("ok", [{"AccountType": "Twitter"}])
    before = pair.rest_requests()
    assert "exact ContactId or Id" in await refused(
        pair, "DataService.query", "SocialAccount", 10, 0, {"AccountType": "Twitter"}, ["Id"]
    )
    assert "MySpace" in await refused(
        pair, "DataService.add", "SocialAccount", {"ContactId": contact, "AccountType": "MySpace"}
    )
    assert "give a ContactId" in await refused(pair, "DataService.add", "SocialAccount",
                                               {"AccountName": "x"})  # fmt: skip
    assert "DateCreated" in await refused(
        pair, "DataService.count", "SocialAccount", {"ContactId": contact, "DateCreated": "~null~"}
    )
    assert pair.rest_requests() == before
    assert "another contact" in await refused(pair, "DataService.update", "SocialAccount", 130,
                                              {"ContactId": 2})  # fmt: skip
    # an unknown contact: legacy stored the row, REST has no contact to put it on
    stray = {"ContactId": 99, "AccountType": "Facebook"}
    legacy, modern = await both(pair, "DataService.add", "SocialAccount", stray)
    assert legacy == ("ok", 2) and modern[:2] == ("fault", 5)


# --- SearchService saved searches -------------------------------------------------------------


async def _people(pair: Pair, n: int) -> None:
    for i in range(n):
        data = {"FirstName": f"P{i}", "LastName": "Doe", "Email": f"p{i}@ex.com"}
        await pair.same("ContactService.add", data)
    await pair.same("ContactService.addToGroup", 2, 104)  # the seeded Customer tag


async def test_saved_search_results(pair: Pair) -> None:
    await _people(pair, 3)
    rows = await pair.same("SearchService.getSavedSearchResultsAllFields", 31, 1, 0)
    assert rows[0] == {"Id": "1", "FirstName": "P0", "LastName": "Doe", "Email": "p0@ex.com"}
    assert len(rows) == 3
    customers = await pair.same("SearchService.getSavedSearchResultsAllFields", 33, 1, 0)
    assert [r["Groups"] for r in customers] == ["104"]
    assert await pair.same("SearchService.getSavedSearchResultsAllFields", 31, 7, 1) == []
    picked = await pair.same("SearchService.getSavedSearchResults", 31, 2, 0, ["Email", "Id"])
    assert list(picked[0]) == ["Email", "Id"]
    await pair.same("SearchService.getSavedSearchResults", 33, 1, 0, ["Groups", "Email", "Groups"])
    columns = await pair.same("SearchService.getAllReportColumns", 33, 1)
    assert columns == {"Id": "Contact Id", "FirstName": "First Name", "LastName": "Last Name",
                       "Email": "Email", "Groups": "Tags"}  # fmt: skip


@pytest.mark.parametrize(
    ("method", "params", "fault"),
    [
        ("SearchService.getSavedSearchResultsAllFields", (33, 2, 0), NOT_FOUND),  # not user 2's
        ("SearchService.getSavedSearchResultsAllFields", (99, 1, 0), NOT_FOUND),
        ("SearchService.getSavedSearchResultsAllFields", (0, 1, 0), NOT_FOUND),
        ("SearchService.getSavedSearchResultsAllFields", (31, 1, -1), INVALID),
        ("SearchService.getSavedSearchResultsAllFields", (31, "1", 0), INVALID),  # no overload
        ("SearchService.getSavedSearchResults", (31, 1, 0, ["Shoe"]), INVALID),
        ("SearchService.getSavedSearchResults", (31, 1, 0, []), NO_FIELDS),
        ("SearchService.getSavedSearchResults", (33, 3, 0, ["Id"]), NOT_FOUND),
        ("SearchService.getAllReportColumns", (33, 2), NOT_FOUND),
        ("SearchService.getAllReportColumns", (98, 1), NOT_FOUND),
    ],
)
async def test_saved_search_faults(
    pair: Pair, method: str, params: tuple[Any, ...], fault: Fault
) -> None:
    await _people(pair, 2)
    await pair.same(method, *params, expect=fault)


async def test_saved_search_pages_map_onto_tokens(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Legacy pages (1000 rows; 2 here) from page 0; REST's tokens are cached, so pages in
    order cost one run each after a cold jump's N+1."""
    monkeypatch.setattr(saved_searches, "LEGACY_PAGE", 2)
    monkeypatch.setattr(reports, "LEGACY_PAGE", 2)
    await _people(pair, 5)
    before = pair.rest_requests()
    third = await pair.same("SearchService.getSavedSearchResultsAllFields", 31, 1, 2)
    assert [r["FirstName"] for r in third] == ["P4"]
    assert pair.rest_requests() - before == 1 + 3  # the report, then runs for pages 0, 1, 2
    for page, names in ((0, ["P0", "P1"]), (1, ["P2", "P3"]), (3, [])):
        rows = await pair.same("SearchService.getSavedSearchResultsAllFields", 31, 1, page)
        assert [r["FirstName"] for r in rows] == names
    before = pair.rest_requests()
    await pair.same("SearchService.getSavedSearchResultsAllFields", 31, 1, 1)
    assert pair.rest_requests() - before == 2  # the report, one run from the cached token


async def test_social_accounts_of_one_type_stop_where_their_ids_would_collide(
    pair: Pair,
) -> None:
    """The stand-in Id has one digit for the rank: an 11th Facebook account of a contact
    would take its first LinkedIn account's Id, so it is refused before anything is written."""
    contact = await _contact(pair)
    for n in range(10):
        data = {"ContactId": contact, "AccountType": "Facebook", "AccountName": f"fb{n}"}
        answer = await pair.call("rest", "DataService.add", "SocialAccount", data)
        assert answer == ("ok", contact * 100 + 10 + n), answer
    eleventh = {"ContactId": contact, "AccountType": "Facebook", "AccountName": "fb10"}
    assert "already has 10 Facebook accounts" in await refused(
        pair, "DataService.add", "SocialAccount", eleventh
    )
    listed = await pair.call(
        "rest", "DataService.query", "SocialAccount", 100, 0, {"ContactId": contact}, ["Id"]
    )
    assert listed[0] == "ok" and len(listed[1]) == 10
