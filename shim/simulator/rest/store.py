"""State REST v2 needs that the legacy tables have no column for, attached to one Database.

Keap keeps email opt-in status per address, tag and file timestamps, and custom-field ids;
the legacy tables the XML-RPC simulator models have none of these. They live here, keyed by
the ``Database`` object, so every view of one simulated app (REST today, a legacy
``APIEmailService`` tomorrow) reaches the same records through ``rest_store(db)`` without a
second copy of the data and without changing ``data.py``.
"""

from __future__ import annotations

import datetime
import re
import weakref
from dataclasses import dataclass, field

from shim.simulator.data import Database

#: Statuses that count as opted in (``opted_in: true``) and can receive marketing.
MARKETABLE = frozenset({"UNENGAGED_MARKETABLE", "SINGLE_OPT_IN", "DOUBLE_OPT_IN", "CONFIRMED"})
#: Opted-out statuses an API opt-in may move back from (docs/keap.md#services): "non-marketable"
#: addresses that never opted in, and manual (API or user) opt-outs. Bounces, spam
#: complaints, lockdowns and list unsubscribes stay put.
REOPTABLE = frozenset({"NON_MARKETABLE", "UNENGAGED_NON_MARKETABLE", "MANUAL"})
STATUSES = (
    *sorted(MARKETABLE),
    *sorted(REOPTABLE),
    *("LOCKDOWN", "BOUNCE", "HARD_BOUNCE", "ADMIN", "SYSTEM", "LIST_UNSUBSCRIBE"),
    *("FEEDBACK", "SPAM", "INVALID", "DEACTIVATED"),
)


@dataclass
class EmailStatus:
    status: str
    create_time: datetime.datetime
    reason: str | None = None

    @property
    def opted_in(self) -> bool:
        return self.status in MARKETABLE


@dataclass
class RestStore:
    #: Casefolded address -> status. Addresses on a contact but absent here are NON_MARKETABLE.
    emails: dict[str, EmailStatus] = field(default_factory=dict)
    #: Legacy custom field name (``_ShoeSize``) -> REST id; ids only grow, never reused.
    custom_ids: dict[str, int] = field(default_factory=dict)
    #: (table, id) -> (created, updated) for tags, categories and files made or changed here.
    times: dict[tuple[str, int], tuple[datetime.datetime, datetime.datetime]] = field(
        default_factory=dict
    )
    #: Custom fields added through either API: legacy name -> (label, REST field_type).
    custom_meta: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: Emails sent: (contact ids, from, address field, subject, html, text), for tests.
    sent: list[tuple[tuple[int, ...], str, str, str, str, str]] = field(default_factory=list)
    #: Contact links: (contact1, contact2, link type id).
    links: set[tuple[int, int, int]] = field(default_factory=set)
    #: Every goal achieved: (integration, call_name, contact_id), for tests to look at.
    goals_achieved: list[tuple[str, str, int]] = field(default_factory=list)

    def touch(self, table: str, record_id: int, when: datetime.datetime) -> None:
        created, _ = self.times.get((table, record_id), (when, when))
        self.times[(table, record_id)] = (created, when)


_STORES: weakref.WeakKeyDictionary[Database, RestStore] = weakref.WeakKeyDictionary()


def rest_store(db: Database) -> RestStore:
    """The REST-side records of ``db`` (created on first use)."""
    store = _STORES.get(db)
    if store is None:
        store = _STORES[db] = RestStore()
    return store


def custom_fields(db: Database) -> list[tuple[int, str]]:
    """(REST id, legacy name) of every custom field the config declares, ids stable."""
    store = rest_store(db)
    for name in db.config.custom_fields:
        if name not in store.custom_ids:
            store.custom_ids[name] = max(store.custom_ids.values(), default=0) + 1
    return [(store.custom_ids[name], name) for name in db.config.custom_fields]


def field_name(legacy: str) -> str:
    """REST ``field_name`` of a legacy custom field: the column name without the API's ``_``.

    Open question (docs/keap.md#open-questions, 2). The SDK's examples (``firstName1``,
    ``Score0``) look like DataFormField names, which legacy scripts address with a leading
    underscore.
    """
    return legacy[1:] if legacy.startswith("_") else legacy


def label(legacy: str) -> str:
    """A display label from the name: ``_ShoeSize`` -> ``Shoe Size``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", field_name(legacy))


def opt_in(db: Database, email: str, reason: str, now: datetime.datetime) -> EmailStatus:
    """Opt an address in if its status allows it (else leave it); returns the status."""
    current = _status(db, email, now)
    if current.status in REOPTABLE:
        current.status, current.reason = "SINGLE_OPT_IN", reason
    return current


def opt_out(db: Database, email: str, reason: str, now: datetime.datetime) -> EmailStatus:
    """A manual opt-out; an address already out for a harder reason (a bounce...) stays so."""
    current = _status(db, email, now)
    if current.opted_in or current.status in REOPTABLE:
        current.status, current.reason = "MANUAL", reason
    return current


_EMAILS = ("Email", "EmailAddress2", "EmailAddress3")


def known_status(db: Database, email: str, now: datetime.datetime) -> EmailStatus | None:
    """An address's record, made NON_MARKETABLE on first look (dated from its contact's
    creation); None for an address on no contact and never seen when the config says such
    addresses are unknown (``rest_unknown_email``: "404"). Shared by REST and legacy."""
    key = email.casefold()
    status = rest_store(db).emails.get(key)
    if status is not None:
        return status
    row = next(
        (
            row
            for row in db.tables["Contact"].values()
            if key in (str(row.get(n) or "").casefold() for n in _EMAILS)
        ),
        None,
    )
    if row is None and db.config.rest_unknown_email == "404":
        return None
    created = None if row is None else row.get("DateCreated")
    when = created if isinstance(created, datetime.datetime) else now
    status = rest_store(db).emails[key] = EmailStatus("NON_MARKETABLE", when)
    return status


def _status(db: Database, email: str, now: datetime.datetime) -> EmailStatus:
    store = rest_store(db)
    current = store.emails.get(email.casefold())
    if current is None:
        current = store.emails[email.casefold()] = EmailStatus("NON_MARKETABLE", now)
    return current


def set_email_status(db: Database, email: str, status: str, now: datetime.datetime) -> None:
    """Force an address's status (tests use it for bounces, spam complaints...)."""
    if status not in STATUSES:
        raise ValueError(f"unknown email status {status!r}")
    store = rest_store(db)
    current = store.emails.get(email.casefold())
    created = current.create_time if current is not None else now
    store.emails[email.casefold()] = EmailStatus(status, created)


#: Contact link types (REST ``/contacts/links/types``): id -> name.
LINK_TYPES = {1: "Spouse", 2: "Business partner"}


def field_label(db: Database, legacy: str) -> str:
    meta = rest_store(db).custom_meta.get(legacy)
    return meta[0] if meta else label(legacy)


def field_type(db: Database, legacy: str) -> str:
    meta = rest_store(db).custom_meta.get(legacy)
    return meta[1] if meta else "TEXT"


def add_custom_field(db: Database, display: str, field_type: str) -> int:
    """A new contact custom field named from its label (``Favorite Color`` ->
    ``_FavoriteColor``), as both APIs create them; returns its id."""
    name = "_" + re.sub(r"[^A-Za-z0-9]", "", display)
    if name == "_" or name in db.config.custom_fields:
        raise ValueError(f"a custom field named {name[1:]!r} exists or the label is empty")
    db.config.custom_fields = (*db.config.custom_fields, name)
    rest_store(db).custom_meta[name] = (display, field_type)
    return dict((n, i) for i, n in custom_fields(db))[name]


def relabel_custom_field(db: Database, field_id: int, display: str) -> None:
    by_id = {i: n for i, n in custom_fields(db)}
    if field_id not in by_id:
        raise KeyError(field_id)
    name = by_id[field_id]
    rest_store(db).custom_meta[name] = (display, field_type(db, name))


#: Seeded email templates (REST ``EmailTemplate``, snake_case), by id.
TEMPLATES: dict[int, dict[str, object]] = {
    40: {
        "piece_title": "Welcome",
        "categories": ["Onboarding", "Newsletters"],
        "from_address": "admin@example.com",
        "to_address": "~Contact.Email~",
        "subject": "Welcome, ~Contact.FirstName~",
        "text_body": "Hello ~Contact.FirstName~",
        "html_body": "<p>Hello ~Contact.FirstName~</p>",
        "content_type": "MULTIPART",
        "merge_context": "CONTACT",
    }
}
