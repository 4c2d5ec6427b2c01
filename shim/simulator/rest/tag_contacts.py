"""Who has which tag (legacy ContactGroupAssign, i.e. ``Database.assignments``) over REST v2:
apply and remove a tag, a tag's contacts (and their count), and a contact's tags.

Assignments are the same dict ``ContactService.addToGroup`` writes, so a tag applied either
way shows in ``Contact.Groups``, ``tag_ids`` and both list endpoints, with one applied time.
"""

from __future__ import annotations

from shim.simulator.asgi import Answer, json_answer
from shim.simulator.rest.http import (
    Call,
    bad,
    check_keys,
    iso,
    missing,
    no_content,
    parse_id,
    row_id,
)
from shim.simulator.rest.query import SINCE, TEXT, UNTIL, listing, parse_filter, select
from shim.simulator.rest.tags import (
    CATEGORY_ID,
    NONE_TEXT,
    TAG,
    TIMES,
    Record,
    find,
    paged,
    record,
    to_json,
    value,
)

APPLIED = {"since_applied_time": SINCE, "until_applied_time": UNTIL}
TAGGED_RULES = {"given_name": NONE_TEXT, "family_name": NONE_TEXT, "email": NONE_TEXT, **APPLIED}
APPLIED_RULES = {"name": TEXT, "description": NONE_TEXT, "category_id": CATEGORY_ID}
APPLIED_RULES |= TIMES | APPLIED


def apply_tags(call: Call) -> Answer:
    """``results`` per contact id: "SUCCESS" (also when it had the tag already, as legacy
    addToGroup) or "CONTACT_DOES_NOT_EXIST" (the sequence endpoints' word for it)."""
    tag_id = row_id(find(call, TAG))
    results = {}
    for text, contact_id in _contact_ids(call):
        if contact_id in call.db.tables["Contact"]:
            call.db.assign(contact_id, tag_id, call.now, on=True)
            results[text] = "SUCCESS"
        else:
            results[text] = "CONTACT_DOES_NOT_EXIST"
    return json_answer(200, {"results": results})


def remove_tags(call: Call) -> Answer:
    """204 whatever each contact had; unknown contacts are skipped."""
    tag_id = row_id(find(call, TAG))
    for _, contact_id in _contact_ids(call):
        call.db.assignments.get(contact_id, {}).pop(tag_id, None)
    return no_content()


def tagged_contacts(call: Call) -> Answer:
    fields = ("given_name", "family_name", "email", "applied_time")
    page, token = paged(call, _tagged(call), TAGGED_RULES, fields)
    return json_answer(200, listing(call, "contacts", [to_json(r) for r in page], token))


def count_tagged(call: Call) -> Answer:
    records = select(_tagged(call), parse_filter(call.arg("filter"), TAGGED_RULES.get), value)
    return json_answer(200, {"count": len(records)})


def contact_tags(call: Call) -> Answer:
    contact_id = call.path_id("contact_id", "contact")
    if contact_id not in call.db.tables["Contact"]:
        raise missing("contact", contact_id)
    records = [
        {**record(call, TAG, call.db.get(TAG.table, tag_id)), "applied_time": when}
        for tag_id, when in call.db.assignments.get(contact_id, {}).items()
    ]
    fields = ("name", "create_time", "update_time", "applied_time", "category_id")
    page, token = paged(call, records, APPLIED_RULES, fields)
    tags = [
        {"tag": to_json({**r, "applied_time": None}), "applied_time": iso(r["applied_time"])}
        for r in page
    ]
    return json_answer(200, listing(call, "tags", tags, token))


def _tagged(call: Call) -> list[Record]:
    tag_id = row_id(find(call, TAG))
    records = []
    for contact_id, tags in call.db.assignments.items():
        if tag_id in tags:
            row = call.db.tables["Contact"][contact_id]
            records.append(
                {
                    "id": contact_id,
                    "email": row.get("Email"),
                    "given_name": row.get("FirstName"),
                    "family_name": row.get("LastName"),
                    "applied_time": tags[tag_id],
                }
            )
    return records


def _contact_ids(call: Call) -> list[tuple[str, int]]:
    """The ids of an ApplyRemoveTagRequest, all checked before any is applied."""
    data = call.body()
    check_keys(data, {"contact_ids"}, "request")
    ids = data.get("contact_ids")
    if not isinstance(ids, list) or not ids or len(ids) > 1000:
        raise bad("contact_ids must be a list of 1 to 1000 contact ids", "contact_ids")
    return [(str(text), parse_id(text, "contact")) for text in ids]
