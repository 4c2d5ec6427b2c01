"""Equivalence: the same legacy sessions through route ``xmlrpc`` and route ``rest`` give
identical XML-RPC answers (values, types, faults), for every translated method the simulated
legacy API also answers. Hypothesis varies contact data and query shapes."""

from __future__ import annotations

import asyncio
import base64
import datetime
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shim.serve.runtime import init_files, open_store
from shim.settings import Settings
from shim.simulator.rest.store import set_email_status
from shim.store.sqlite import SqliteStore
from tests.support.rest_pair import Fault, Pair, open_pair

NOT_FOUND = Fault(5, "RecordNotFound")
NO_METHOD = Fault(12, "InvalidParameter")  # No method matching arguments: ...

pytestmark = pytest.mark.anyio

ADA: dict[str, Any] = {
    "FirstName": "Ada",
    "MiddleName": "King",
    "LastName": "Lovelace",
    "Nickname": "Countess",
    "Title": "Lady",
    "Suffix": "II",
    "Email": "ada@example.com",
    "EmailAddress2": "ada@work.example",
    "Phone1": "555-0100",
    "Phone1Ext": "12",
    "Phone1Type": "Work",
    "Phone3": "555-0300",
    "Phone5": "555-0500",
    "Phone5Type": "Mobile",
    "StreetAddress1": "1 Analytical Way",
    "StreetAddress2": "Suite 2",
    "City": "London",
    "State": "LDN",
    "PostalCode": "W1",
    "Country": "GBR",
    "Address2Street1": "2 Engine Rd",
    "City2": "Marylebone",
    "PostalCode2": "NW1",
    "Company": "Engines Ltd",
    "CompanyID": 7,
    "JobTitle": "Analyst",
    "ContactType": "Customer",
    "Website": "https://ada.example",
    "OwnerID": 3,
    "Birthday": datetime.datetime(1815, 12, 10),
    "_ShoeSize": "38",
    "_Notes": "first programmer",
}
READ = [
    "Id", *ADA, "EmailAddress3", "Phone2", "DateCreated", "LastUpdated", "Groups", "_LegacyId",
]  # fmt: skip


@pytest.fixture
async def pair(settings: Settings, store: SqliteStore) -> AsyncIterator[Pair]:
    async with open_pair(replace(settings), store, {}) as p:
        yield p


async def _people(pair: Pair) -> list[int]:
    people = [
        ADA,
        {"FirstName": "Grace", "LastName": "Hopper", "Email": "GRACE@navy.example"},
        {"FirstName": "Alan", "LastName": "Turing", "Email": "alan@b.example", "Phone1": "555-9"},
        {"FirstName": "ada", "LastName": "Byron", "EmailAddress2": "byron@example.com"},
        {"LastName": "Anon", "Phone2": "555-0222", "Company": "Engines Ltd", "City": "london"},
    ]
    return [await pair.same("ContactService.add", person) for person in people]


async def test_contact_lifecycle(pair: Pair) -> None:
    ada = await pair.same("ContactService.add", ADA)
    assert ada == 1
    assert (await pair.same("ContactService.load", ada, READ))["Birthday"] == ADA["Birthday"]
    await pair.same("DataService.load", "Contact", ada, ["Id", "Email", "Phone5Type"])
    # plain fields: one PATCH; arrays, custom fields, half a company: read-merge-write
    await pair.same("ContactService.update", ada, {"JobTitle": "Mathematician", "OwnerID": "4"})
    await pair.same("ContactService.update", ada, {"EmailAddress3": "ada@home.example"})
    clear_slot = {"Phone1": "", "Phone1Ext": "", "Phone1Type": "", "Phone2": "555-0200"}
    await pair.same("ContactService.update", ada, clear_slot)
    await pair.same("ContactService.update", ada, {"City2": "Westminster", "Company": "AE"})
    await pair.same("ContactService.update", ada, {"_LegacyId": 42, "_Notes": ""})
    await pair.same("DataService.update", "Contact", ada, {"EmailAddress2": "", "Suffix": ""})
    await pair.same("ContactService.update", ada, {})
    await pair.same("ContactService.load", ada, READ)
    await pair.same("ContactService.addToGroup", ada, 100)
    await pair.same("ContactService.addToGroup", ada, 104)
    await pair.same("ContactService.addToGroup", ada, 104)
    await pair.same("ContactService.load", ada, ["Groups", "Id"])
    await pair.same("ContactService.removeFromGroup", ada, 100)
    await pair.same("ContactService.removeFromGroup", ada, 100)
    await pair.same("ContactService.load", ada, ["Groups"])
    await pair.same("DataService.delete", "Contact", ada)
    await pair.same("ContactService.load", ada, ["Id"], expect=NOT_FOUND)


@pytest.mark.parametrize(
    ("method", "params", "fault"),
    [
        ("ContactService.load", (999, ["Id"]), Fault(5, "RecordNotFound")),
        ("ContactService.load", (1, ["Nope"]), Fault(10, "NoFieldFound")),
        ("ContactService.load", (1, []), Fault(11, "NoFields")),
        ("ContactService.load", ("1", ["Id"]), Fault(12, "InvalidParameter")),
        ("ContactService.load", (1,), Fault(12, "InvalidParameter")),
        ("ContactService.add", ({"Nope": 1},), Fault(10, "NoFieldFound")),
        ("ContactService.add", ({"Id": 5, "Email": "x@y.z"},), Fault(8, "NoFieldAccess")),
        (
            "ContactService.add",
            ({"OwnerID": "abc", "Email": "x@y.z"},),
            Fault(12, "InvalidParameter"),
        ),
        ("ContactService.add", ({"FirstName": {"a": 1}},), Fault(12, "InvalidParameter")),
        ("ContactService.add", ({"Birthday": "not a date"},), Fault(12, "InvalidParameter")),
        ("ContactService.update", (999, {"FirstName": "x"}), Fault(5, "RecordNotFound")),
        ("ContactService.update", (999, {}), Fault(5, "RecordNotFound")),
        ("ContactService.update", (1, {"DateCreated": "2020-01-01"}), Fault(8, "NoFieldAccess")),
        ("ContactService.addToGroup", (999, 100), Fault(5, "RecordNotFound")),
        ("ContactService.addToGroup", (1, 999), Fault(5, "RecordNotFound")),
        ("ContactService.removeFromGroup", (999, 100), Fault(5, "RecordNotFound")),
        ("ContactService.removeFromGroup", (1, 999), Fault(5, "RecordNotFound")),
        ("ContactService.findByEmail", ("x@y.z", ["Nope"]), Fault(10, "NoFieldFound")),
        ("DataService.load", ("Nope", 1, ["Id"]), Fault(9, "NoTableFound")),
        ("DataService.load", ("Contact", 1, ["Id", "Nope"]), Fault(10, "NoFieldFound")),
        ("DataService.delete", ("Contact", 999), Fault(5, "RecordNotFound")),
        ("DataService.delete", ("ContactGroup", 999), Fault(5, "RecordNotFound")),
        ("DataService.delete", ("ContactGroupAssign", 1), Fault(7, "NoTableAccess")),
        (
            "DataService.add",
            ("ContactGroupAssign", {"ContactId": 1, "GroupId": 100}),
            Fault(7, "NoTableAccess"),
        ),
        (
            "DataService.update",
            ("ContactGroupAssign", 1, {"GroupId": 100}),
            Fault(7, "NoTableAccess"),
        ),
        ("DataService.load", ("ContactGroupAssign", 1, ["ContactId"]), Fault(5, "RecordNotFound")),
        ("DataService.load", ("ContactGroupAssign", 1, ["Nope"]), Fault(10, "NoFieldFound")),
        (
            "DataService.add",
            ("ContactGroup", {"GroupName": "x", "Id": 5}),
            Fault(8, "NoFieldAccess"),
        ),
        (
            "DataService.add",
            ("ContactGroup", {"GroupCategoryId": "x", "GroupName": "x"}),
            Fault(12, "InvalidParameter"),
        ),
        (
            "DataService.update",
            ("ContactGroup", 999, {"GroupName": "x"}),
            Fault(5, "RecordNotFound"),
        ),
        ("DataService.load", ("ContactGroupCategory", 999, ["Id"]), Fault(5, "RecordNotFound")),
        ("DataService.query", ("Contact", 10, 0, {"Nope": "x"}, ["Id"]), Fault(10, "NoFieldFound")),
        (
            "DataService.query",
            ("Contact", 10, 0, {"Id": "~>~x"}, ["Id"]),
            Fault(12, "InvalidParameter"),
        ),
        (
            "DataService.query",
            ("Contact", 10, 0, {"DateCreated": "~>~soon"}, ["Id"]),
            Fault(12, "InvalidParameter"),
        ),
        ("DataService.query", ("Contact", 10, 0, {}, []), Fault(11, "NoFields")),
        ("DataService.query", ("Contact", 0, 0, {}, ["Id"]), Fault(12, "InvalidParameter")),
        ("DataService.query", ("Contact", 10, -1, {}, ["Id"]), Fault(12, "InvalidParameter")),
        (
            "DataService.query",
            ("Contact", 10, 0, {}, ["Id"], "Nope", True),
            Fault(10, "NoFieldFound"),
        ),
        ("DataService.query", ("Nope", 10, 0, {}, ["Id"]), Fault(9, "NoTableFound")),
        (
            "DataService.query",
            ("ContactGroup", 10, 0, {"Nope": 1}, ["Id"]),
            Fault(10, "NoFieldFound"),
        ),
        ("DataService.count", ("Nope", {}), Fault(9, "NoTableFound")),
        ("DataService.count", ("Contact", {"Nope": 1}), Fault(10, "NoFieldFound")),
        (
            "DataService.findByField",
            ("Contact", 10, 0, "Nope", "x", ["Id"]),
            Fault(10, "NoFieldFound"),
        ),
        ("FileService.getFile", (999,), Fault(5, "RecordNotFound")),
        ("FileService.uploadFile", (999, "a.txt", "aGk="), Fault(5, "RecordNotFound")),
    ],
)
async def test_faults(pair: Pair, method: str, params: tuple[Any, ...], fault: Fault) -> None:
    await pair.same("ContactService.add", {"FirstName": "Only", "Email": "only@example.com"})
    await pair.same(method, *params, expect=fault)


async def test_find_by_email(pair: Pair) -> None:
    await _people(pair)
    for email in ("ada@example.com", "grace@navy.example", "BYRON@example.com", "nobody@x.y"):
        await pair.same("ContactService.findByEmail", email, ["Id", "FirstName", "Email"])
    await pair.same("ContactService.findByEmail", "ada@example.com", ["_ShoeSize", "City"])


QUERIES: list[tuple[Any, ...]] = [
    ({"Id": "%"}, ["Id", "FirstName"]),
    ({"FirstName": "ada"}, ["Id", "FirstName", "LastName"]),
    ({"FirstName": "Ad%"}, ["Id"]),
    ({"LastName": "%ing"}, ["Id", "LastName"]),
    ({"LastName": "%o%"}, ["Id", "LastName"]),
    ({"Email": "%example%"}, ["Id", "Email"]),
    ({"Email": "ada@example.com"}, ["Id"]),
    ({"Email": "byron@example.com"}, ["Id"]),
    ({"City": "London"}, ["Id", "City"]),
    ({"City": "~null~"}, ["Id"]),
    ({"City": "~<>~null~"}, ["Id", "City"]),
    ({"FirstName": "~<>~Ada"}, ["Id", "FirstName"]),
    ({"Id": "~>~2"}, ["Id"]),
    ({"Id": "~<=~2"}, ["Id"]),
    ({"Id": 3}, ["Id", "LastName"]),
    ({"CompanyID": 7}, ["Id", "Company"]),
    ({"Company": "Engines Ltd"}, ["Id"]),
    ({"_ShoeSize": "38"}, ["Id", "_ShoeSize"]),
    ({"_ShoeSize": "3%"}, ["Id"]),
    ({"Phone1": "555%"}, ["Id", "Phone1"]),
    ({"FirstName": "Ada", "LastName": "Lovelace"}, ["Id"]),
    ({"DateCreated": "~>=~2026-01-01"}, ["Id"]),
    ({"LastUpdated": "~<~2030-01-01 00:00:00"}, ["Id"]),
    ({}, ["Id", "LastName"], "LastName", True),
    ({}, ["Id", "LastName"], "LastName", False),
    ({}, ["Id", "Email"], "Email", True),
    ({}, ["Id", "Email"], "Email", False),
    ({}, ["Id"], "Id", False),
    ({}, ["Id"], "DateCreated", True),
    ({"Id": "%"}, ["Id", "City"], "City", True),
]


@pytest.mark.parametrize("shape", QUERIES, ids=[str(q[0]) + str(q[2:]) for q in QUERIES])
async def test_query_shapes(pair: Pair, shape: tuple[Any, ...]) -> None:
    await _people(pair)
    query, fields, *order = shape
    for limit, page in ((1000, 0), (2, 0), (2, 1), (2, 2), (3, 5)):
        await pair.same("DataService.query", "Contact", limit, page, query, fields, *order)
    await pair.same("DataService.count", "Contact", query)
    if len(query) == 1 and not order:
        [(name, value)] = query.items()
        await pair.same("DataService.findByField", "Contact", 10, 0, name, value, fields)


async def test_pages_walk_in_order(pair: Pair) -> None:
    ids = await _people(pair)
    before = pair.rest_requests()
    for page in range(4):
        await pair.same("DataService.query", "Contact", 2, page, {"Id": "%"}, ["Id"])
    # cached page tokens: one REST request a page (plus the first)
    assert pair.rest_requests() - before == 4
    assert ids == [1, 2, 3, 4, 5]


async def test_tags_and_categories(pair: Pair) -> None:
    ids = await _people(pair)
    cat = await pair.same("DataService.add", "ContactGroupCategory", {"CategoryName": "Events"})
    tag = await pair.same(
        "DataService.add",
        "ContactGroup",
        {"GroupName": "Summit 2026", "GroupCategoryId": cat, "GroupDescription": "attended"},
    )
    bare = await pair.same("DataService.add", "ContactGroup", {"GroupName": "Bare"})
    group_fields = ["Id", "GroupName", "GroupCategoryId", "GroupDescription"]
    await pair.same("DataService.load", "ContactGroup", tag, group_fields)
    await pair.same("DataService.update", "ContactGroup", tag, {"GroupDescription": ""})
    await pair.same("DataService.update", "ContactGroup", bare, {"GroupCategoryId": 12})
    await pair.same("DataService.update", "ContactGroupCategory", cat, {"CategoryDescription": "d"})
    for query, order in [
        ({"Id": "%"}, ()),
        ({"GroupName": "Summit 2026"}, ()),
        ({"GroupName": "%e%"}, ("GroupName", False)),
        ({"GroupCategoryId": 12}, ()),
        ({"GroupCategoryId": "~null~"}, ()),
        ({"GroupDescription": "~null~"}, ("GroupName", True)),
    ]:
        await pair.same("DataService.query", "ContactGroup", 10, 0, query, group_fields, *order)
        await pair.same("DataService.count", "ContactGroup", query)
    for query in ({"Id": "%"}, {"CategoryName": "Events"}, {"CategoryDescription": "~null~"}):
        fields = ["Id", "CategoryName", "CategoryDescription"]
        await pair.same("DataService.query", "ContactGroupCategory", 10, 0, query, fields)
        await pair.same("DataService.count", "ContactGroupCategory", query)
    for contact in ids[:3]:
        await pair.same("ContactService.addToGroup", contact, tag)
    await pair.same("ContactService.addToGroup", ids[0], 100)
    assign = ["ContactId", "GroupId", "ContactGroup", "DateCreated", "Contact.Email"]
    assign += ["Contact.FirstName", "Contact.LastName"]
    for query, order in [
        ({"ContactId": ids[0]}, ()),
        ({"GroupId": tag}, ()),
        ({"GroupId": tag}, ("ContactId", False)),
        ({"GroupId": tag, "Contact.FirstName": "%a%"}, ()),
        ({"ContactId": ids[0], "GroupId": 100}, ()),
        ({"ContactId": 999}, ()),
        ({"GroupId": 999}, ()),
    ]:
        for limit, page in ((10, 0), (1, 1)):
            await pair.same(
                "DataService.query", "ContactGroupAssign", limit, page, query, assign, *order
            )
        await pair.same("DataService.count", "ContactGroupAssign", query)
    await pair.same("DataService.delete", "ContactGroup", bare)
    await pair.same("DataService.load", "ContactGroup", bare, ["Id"], expect=NOT_FOUND)
    await pair.same("DataService.delete", "ContactGroupCategory", cat)


async def test_files_settings_echo(pair: Pair) -> None:
    ada = await pair.same("ContactService.add", ADA)
    data = bytes(range(256)) * 41  # not a multiple of 3
    file_id = await pair.same(
        "FileService.uploadFile", ada, "blob.bin", base64.b64encode(data).decode()
    )
    assert base64.b64decode(await pair.same("FileService.getFile", file_id)) == data
    empty = await pair.same("FileService.uploadFile", ada, "empty.txt", "")
    await pair.same("FileService.getFile", empty)
    for setting in ("optiontypes", "phonetypes", "faxtypes"):
        await pair.same("DataService.getAppSetting", "Contact", setting)
    await pair.same("DataService.echo", "hello")


MORE: dict[str, Any] = {
    "Fax1": "555-0901",
    "Fax1Type": "Work",
    "Fax2": "555-0902",
    "ZipFour1": "1234",
    "Address3Street1": "3 Other Pl",
    "Address3Street2": "Flat 3",
    "City3": "Bath",
    "State3": "BAS",
    "PostalCode3": "BA1",
    "ZipFour3": "0003",
    "Country3": "GBR",
    "SpouseName": "William",
    "Anniversary": datetime.datetime(1835, 7, 8),
    "ReferralCode": "REF-1",
    "TimeZone": "Europe/London",
    "Language": "en_GB",
    "LeadSourceId": 9,
    "AssistantName": "Babbage",
    "AssistantPhone": "555-0999",
    "BillingInformation": "net 30",
}


async def test_more_contact_fields(pair: Pair) -> None:
    ada = await pair.same("ContactService.add", {**ADA, **MORE})
    fields = ["Id", *MORE]
    await pair.same("ContactService.load", ada, fields)
    await pair.same("ContactService.update", ada, {"Fax2": "", "City3": "Bristol", "ZipFour1": ""})
    await pair.same("ContactService.update", ada, {"LeadSourceId": "11", "SpouseName": ""})
    await pair.same("DataService.update", "Contact", ada, {"Anniversary": "2020-02-02"})
    await pair.same("DataService.load", "Contact", ada, fields)
    await pair.same("ContactService.findByEmail", "ada@example.com", ["Fax1", "Country3"])
    await pair.same("DataService.query", "Contact", 10, 0, {"Id": ada}, fields)


DUPS = [
    ({"Email": "ADA@example.com", "JobTitle": "Poet"}, "Email"),
    ({"Email": "ada@example.com", "FirstName": "ada", "LastName": "lovelace"}, "EmailAndName"),
    ({"Email": "ada@example.com", "FirstName": "Ada"}, "EmailAndName"),
    ({"Email": "ada@example.com", "FirstName": "Ada", "LastName": "Lovelace"},
     "EmailAndNameAndCompany"),
    ({"Email": "ada@example.com", "FirstName": "Ada", "LastName": "Lovelace",
      "Company": "engines ltd", "Phone2": "555-0202"}, "EmailAndNameAndCompany"),
    ({"Email": "GRACE@navy.example", "FirstName": "G", "LastName": "Hopper"}, "EmailAndName"),
    ({"Email": "GRACE@navy.example", "FirstName": "G"}, "Email"),
    ({"Email": "alan@b.example", "Phone1": "555-1", "JobTitle": "Codebreaker"}, "Email"),
    ({"Email": "new@example.com", "FirstName": "New"}, "Email"),
    ({"Email": "byron@example.com"}, "Email"),  # EmailAddress2 does not count
    ({"Phone1": "555-0100"}, "Email"),  # no email: always a new contact
    ({"Email": "x@y.z"}, "Nope", Fault(12, "InvalidParameter")),
    ({"Email": "x@y.z"}, "", Fault(12, "InvalidParameter")),
    ({"Nope": 1, "Email": "ada@example.com"}, "Email", Fault(10, "NoFieldFound")),
    ({"OwnerID": "abc", "Email": "ada@example.com"}, "Email", Fault(12, "InvalidParameter")),
    ({"Email": "ada@example.com"}, 1, NO_METHOD),
]  # fmt: skip


@pytest.mark.parametrize(("data", "dup_type", "fault"), [(*d, None)[:3] for d in DUPS])
async def test_add_with_dup_check(
    pair: Pair, data: dict[str, Any], dup_type: str, fault: Fault | None
) -> None:
    await _people(pair)
    answer = await pair.same("ContactService.addWithDupCheck", data, dup_type, expect=fault)
    read = ["Id", "FirstName", "LastName", "Email", "EmailAddress2", "Phone1", "Phone2"]
    read += ["JobTitle", "Company", "City", "LastUpdated"]
    await pair.same("DataService.query", "Contact", 100, 0, {"Id": "%"}, read)
    if isinstance(answer, int):
        await pair.same("ContactService.load", answer, READ)


async def test_merge(pair: Pair) -> None:
    ids = await _people(pair)
    await pair.same("ContactService.addToGroup", ids[0], 100)
    await pair.same("ContactService.addToGroup", ids[3], 100)
    await pair.same("ContactService.addToGroup", ids[3], 104)
    await pair.same("FileService.uploadFile", ids[3], "byron.txt", "aGk=")
    await pair.same("ContactService.merge", ids[0], ids[3])
    await pair.same("ContactService.load", ids[0], READ)
    await pair.same("ContactService.load", ids[3], ["Id"], expect=NOT_FOUND)
    for query in ({"ContactId": ids[0]}, {"GroupId": 104}):
        fields = ["ContactId", "GroupId", "DateCreated"]
        await pair.same("DataService.query", "ContactGroupAssign", 10, 0, query, fields)
    await pair.same("ContactService.merge", ids[4], ids[1])
    await pair.same("ContactService.load", ids[4], READ)
    merged_away = (ids[0], ids[3]), (ids[3], ids[0]), (999, ids[2]), (0, 1)
    for bad in merged_away:
        await pair.same("ContactService.merge", *bad, expect=NOT_FOUND)
    await pair.same("ContactService.merge", ids[2], ids[2], expect=Fault(12, "InvalidParameter"))
    await pair.same("ContactService.merge", ids[2], "x", expect=NO_METHOD)


@pytest.mark.parametrize("unknown", ["404", "non_marketable"])
async def test_email_opt_in_out(pair: Pair, unknown: str) -> None:
    for sim in pair.sims.values():
        sim.config.rest_unknown_email = unknown  # type: ignore[assignment]
    await _people(pair)
    for sim in pair.sims.values():
        set_email_status(sim.db, "alan@b.example", "HARD_BOUNCE", datetime.datetime(2026, 1, 1))
    emails = ["ada@example.com", "ADA@work.example", "grace@navy.example", "alan@b.example"]
    emails += ["byron@example.com", "nobody@x.y"]
    for email in emails:
        await pair.same("APIEmailService.getOptStatus", email)
        await pair.same("APIEmailService.optIn", email, "asked for it")
        await pair.same("APIEmailService.getOptStatus", email)
        await pair.same("APIEmailService.optOut", email, "")
        await pair.same("APIEmailService.getOptStatus", email)
        await pair.same("APIEmailService.optIn", email, "")
        await pair.same("APIEmailService.getOptStatus", email)
    for sim in pair.sims.values():
        set_email_status(sim.db, "grace@navy.example", "CONFIRMED", datetime.datetime(2026, 1, 1))
    await pair.same("APIEmailService.getOptStatus", "grace@navy.example")
    await pair.same("APIEmailService.optIn", "grace@navy.example", "again")
    await pair.same("APIEmailService.getOptStatus", "grace@navy.example")
    await pair.same("APIEmailService.optOut", "grace@navy.example", "bye")
    await pair.same("APIEmailService.getOptStatus", "grace@navy.example")
    await pair.same("APIEmailService.optIn", "grace@navy.example", expect=NO_METHOD)  # arity
    await pair.same("APIEmailService.getOptStatus", 5, expect=NO_METHOD)


async def test_achieve_goal_and_user_info(pair: Pair) -> None:
    ids = await _people(pair)
    for integration, call_name, contact, fault in [
        ("keyshim", "signup", ids[0], None),
        ("keyshim", "purchase", ids[1], None),
        ("keyshim", "purchase", ids[1], None),
        ("keyshim", "nope", ids[0], None),
        ("other", "signup", ids[0], None),
        ("", "", ids[0], None),
        ("keyshim", "signup", 999, NOT_FOUND),
        ("keyshim", "signup", 0, NOT_FOUND),
    ]:
        await pair.same("FunnelService.achieveGoal", integration, call_name, contact, expect=fault)
    await pair.same("FunnelService.achieveGoal", "keyshim", "signup", "1", expect=NO_METHOD)
    achieved = [sim.rest_endpoint.store.goals_achieved for sim in pair.sims.values()]
    assert achieved[0] == achieved[1] and len(achieved[0]) == 3
    await pair.same("DataService.getUserInfo")
    await pair.same("DataService.getUserInfo", "extra", expect=NO_METHOD)


# --- hypothesis: contact data and query shapes ----------------------------------------------

TEXT = st.text(alphabet="abAB xy-'.;*%_@", min_size=0, max_size=6)
FIELDS = ["FirstName", "LastName", "City", "Email", "EmailAddress2", "Phone2", "_ShoeSize"]
PERSON = st.dictionaries(st.sampled_from(FIELDS), TEXT, max_size=5).map(
    lambda d: {**d, "Email": d.get("Email") or "someone@example.com"}
)
CRITERION = st.one_of(
    TEXT,
    TEXT.map(lambda t: t + "%"),
    TEXT.map(lambda t: "%" + t),
    TEXT.map(lambda t: f"%{t}%"),
    TEXT.map(lambda t: "~<>~" + t),
    st.sampled_from(["~null~", "~<>~null~", "%"]),
)
SHAPE = st.tuples(
    st.dictionaries(st.sampled_from(FIELDS), CRITERION, max_size=2),
    st.sampled_from([None, "Id", "LastName", "Email", "City"]),
    st.booleans(),
    st.integers(1, 3),
    st.integers(0, 2),
)


@pytest.mark.slow
@settings(
    max_examples=int(os.environ.get("REST_EQUIVALENCE_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],  # each example is a whole session
)
@given(
    people=st.lists(PERSON, min_size=1, max_size=5),
    shapes=st.lists(SHAPE, min_size=1, max_size=4),
)
def test_hypothesis_sessions(
    tmp_path_factory: pytest.TempPathFactory, people: list[dict[str, Any]], shapes: list[Any]
) -> None:
    """Random sessions through both routes: 1-5 contacts with arbitrary short text (LIKE
    wildcards, quotes, case, empty values) in the name, email, phone, city and custom fields;
    an update; then 1-4 queries mixing exact, prefix, suffix, infix, not-equal and null
    criteria on up to two fields, with or without an order, at small page sizes and pages
    past the end; counts for the same criteria; findByEmail. Every call must succeed with
    the same typed answer on both routes. Marked slow: 100 examples by default
    (REST_EQUIVALENCE_EXAMPLES to change it)."""
    asyncio.run(_session(tmp_path_factory.mktemp("h"), people, shapes))


async def _session(directory: Path, people: list[dict[str, Any]], shapes: list[Any]) -> None:
    config = Settings.from_env({}, db=str(directory / "keyshim.db"))
    init_files(config)
    store = open_store(config)
    try:
        async with open_pair(config, store, {}) as pair:
            ids = [await pair.same("ContactService.add", person) for person in people]
            await pair.same("ContactService.update", ids[0], people[-1])
            await pair.same("ContactService.load", ids[0], ["Id", *FIELDS])
            for query, order_by, ascending, limit, page in shapes:
                order = (order_by, ascending) if order_by else ()
                fields = ["Id", *FIELDS]
                await pair.same("DataService.query", "Contact", limit, page, query, fields, *order)
                await pair.same("DataService.count", "Contact", query)
            for person in people[:2]:
                await pair.same("ContactService.findByEmail", person["Email"], ["Id", "Email"])
    finally:
        store.close()
