"""Keap's own Python SDK (``keap-core-v2-sdk`` from PyPI, unchanged) through keyshim.

Its host points at keyshim and the keyshim key goes where its OAuth access token would
(``Configuration(host=..., access_token=KEY)``, sent as ``Authorization: Bearer``): the two
lines a team changes when it rewrites a script for REST v2 (README: rewriting a script).
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from shim.settings import Settings
from shim.store.sqlite import SqliteStore
from tests.support.passthrough import Rest, rest_stack

sdk = pytest.importorskip("keap_core_v2_client")


def session(env: Rest, log: list[str]) -> None:
    config = sdk.Configuration(host=f"http://127.0.0.1:{env.shim.port}/crm", access_token=env.key)
    with sdk.ApiClient(config) as client:
        contacts = sdk.ContactApi(client)
        tags = sdk.TagsApi(client)
        orders = sdk.OrdersApi(client)
        files = sdk.FilesApi(client)

        made = []
        for given, family in (("Grace", "Hopper"), ("Gretchen", "Ross"), ("Alan", "Kay")):
            contact = contacts.create_contact(
                sdk.CreateUpdateContactRequest(
                    given_name=given,
                    family_name=family,
                    email_addresses=[
                        sdk.EmailAddressRequest(email=f"{given.lower()}@sdk.test", field="EMAIL1")
                    ],
                )
            )
            made.append(contact.id)
        log.append(f"created contacts {made}")

        page = contacts.list_contacts(filter="given_name==Gr*", order_by="id asc", page_size=1)
        first = [c.id for c in page.contacts]
        second = contacts.list_contacts(
            filter="given_name==Gr*",
            order_by="id asc",
            page_size=1,
            page_token=page.next_page_token,
        )
        log.append(f"given_name==Gr* page 1 {first}, page 2 {[c.id for c in second.contacts]}")
        assert first + [c.id for c in second.contacts] == made[:2]

        updated = contacts.update_contact(
            made[0],
            sdk.CreateUpdateContactRequest(family_name="Murray Hopper", given_name="ignored"),
            update_mask=["family_name"],
        )
        assert updated.family_name == "Murray Hopper" and updated.given_name == "Grace"
        log.append(f"updated contact {made[0]}: family_name={updated.family_name!r}")

        tag = tags.create_tag(sdk.CreateUpdateTagRequest(name="Moved to REST v2"))
        applied = tags.apply_tags(tag.id, sdk.ApplyRemoveTagRequest(contact_ids=made[:2]))
        tagged = tags.list_contacts_with_tag_id(tag.id)
        ids = sorted(int(c.id) for c in tagged.contacts)
        assert ids == sorted(int(i) for i in made[:2])
        log.append(f"tag {tag.id} applied to {ids} ({type(applied).__name__})")

        order = orders.create_order(
            sdk.RestCreateOrderRequest(
                contact_id=made[1],
                order_title="SDK order",
                order_time=datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.timezone.utc),
                order_type="ONLINE",
            )
        )
        fetched = orders.get_order(order.id)
        assert fetched.id == order.id
        log.append(f"order {order.id} for contact {made[1]}: {fetched.title!r}")

        meta = files.create_file(
            file=("notes.txt", b"hello from the SDK\n"),
            file_name="notes.txt",
            file_association="CONTACT",
            contact_id=made[0],
            is_public="false",
        )
        data = files.get_file_data1(meta.id)
        assert bytes(data) == b"hello from the SDK\n"
        files.delete_file(meta.id)
        log.append(f"file {meta.id} uploaded, read back ({len(data)} bytes), deleted")

        contacts.delete_contact(made[2])
        left = contacts.list_contacts(filter="given_name==Alan")
        assert left.contacts in (None, [])
        log.append(f"deleted contact {made[2]}")


@pytest.mark.slow
def test_a_session_of_keaps_python_sdk_through_keyshim(
    settings: Settings, store: SqliteStore, capsys: Any
) -> None:
    log: list[str] = []
    with rest_stack(settings, store) as env:
        session(env, log)
        sent = env.sim.rest_endpoint.routes
    with capsys.disabled():
        print("\nSDK session through keyshim:\n  " + "\n  ".join(log))
    assert sent["PATCH /contacts/{contact_id}"] == 1
    assert sent["POST /tags/{tag_id}/contacts:applyTags"] == 1
    assert sent["GET /files/{file_id}:data"] == 1
    assert sum(sent.values()) == 16
    rows = store.usage(0)
    assert {r["method"] for r in rows} >= {"REST PATCH /contacts/{id}", "REST POST /orders"}
