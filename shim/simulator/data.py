"""The simulated app's data: rows of the legacy tables, tag assignments and file contents.

Rows are plain dicts keyed by legacy field name. Derived fields (``Contact.Groups``, every
ContactGroupAssign row) are computed when read, so there is one source of truth for which
contact has which tag. File contents are kept as bytes apart from their FileBox rows.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from shim.simulator import commerce
from shim.simulator.config import SimConfig
from shim.simulator.faults import KeapFault, invalid, not_found
from shim.simulator.schema import READ_ONLY_TABLES, TABLES, check_field, coerce, fields_of
from shim.xmlrpc import Value

Row = dict[str, Value]

#: Seeded tag categories and tags: (Id, name, description[, category]).
_CATEGORIES = [(10, "Interests", "What a contact asked about"), (12, "Status", "")]
_TAGS = [
    (100, "Newsletter", "Subscribed to the newsletter", 10),
    (102, "Webinar Attendee", "", 10),
    (104, "Customer", "Bought something", 12),
    (106, "Do Not Contact", "", 12),
]
#: Seeded opportunity stages (Id, name, order, target days) and users (Id, names, email).
_STAGES = [(20, "New", 1, 3), (22, "Qualified", 2, 7), (24, "Won", 3, 0)]
_USERS = [(1, "Sim", "Admin", "admin@example.com"), (2, "Sam", "Seller", "sam@example.com")]
#: ``addWithDupCheck``'s ``dupCheckType`` (REST ``duplicate_option``) -> the fields that must match.
DUPLICATE_KEYS = {
    "Email": ("Email",),
    "EmailAndName": ("Email", "FirstName", "LastName"),
    "EmailAndNameAndCompany": ("Email", "FirstName", "LastName", "Company"),
}
#: REST custom field types -> legacy DataFormField.DataType (the ones the tests create).
_DATA_TYPES = {"TEXT": 15, "TEXT_AREA": 16, "WHOLE_NUMBER": 12, "DATE": 13, "DROPDOWN": 21}
#: Seeded legacy action sets: id -> the steps it runs (what the operator maps it to on the
#: keyshim side; see shim/rest/actionsets.py for the step objects).
ACTION_SETS: dict[int, list[dict[str, object]]] = {
    12: [
        {"op": "apply_tag", "tag": 100},
        {"op": "remove_tag", "tag": 102},
        {"op": "achieve_goal", "integration": "keyshim", "call_name": "signup"},
        {"op": "add_note", "title": "Action set 12 ran", "text": "welcome"},
    ],
    14: [{"op": "achieve_goal", "integration": "keyshim", "call_name": "nope"}],
}
_SETTINGS = {
    ("Contact", "optiontypes"): "Prospect,Customer,Partner,Personal Contact,Vendor",
    ("Contact", "phonetypes"): "Work,Home,Mobile,Other",
    ("Contact", "faxtypes"): "Work,Home,Other",
    ("Contact", "titletypes"): "Mr.,Mrs.,Ms.,Dr.",
    ("Contact", "suffixtypes"): "Jr.,Sr.,II,III",
    ("Application", "enabled"): "yes",
    ("Application", "timezone"): "America/New_York",
    ("Order", "optioncctypes"): "Visa,MasterCard,American Express,Discover",
    ("Order", "optionpaymenttypes"): "Cash,Check,Credit Card,Money Order",
    ("Order", "defaultmaxretry"): "3",
    ("Order", "defaultnumdaysbetween"): "5",
    ("Order", "currency"): "USD",
    ("Order", "defaultcountry"): "United States",
    ("Invoice", "taxlabel"): "Sales Tax",
}


#: Tables whose rows carry DateCreated and LastUpdated stamped by the app.
_STAMPED = frozenset({"Contact", "SocialAccount"})
#: Rows deleted with the record they belong to: table -> (child table, column naming it).
_OWNED: dict[str, tuple[tuple[str, str], ...]] = {
    "Contact": (("SocialAccount", "ContactId"),),
    "Product": (("ProductCategoryAssign", "ProductId"),),
    "ProductCategory": (("ProductCategoryAssign", "ProductCategoryId"),),
}


def to_datetime(now: float) -> datetime.datetime:
    """Keap's dateTime values are naive and whole seconds."""
    return datetime.datetime.fromtimestamp(int(now), tz=datetime.timezone.utc).replace(tzinfo=None)


class Database:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.tables: dict[str, dict[int, Row]] = {
            name: {} for name in TABLES if name not in ("ContactGroupAssign", "DataFormField")
        }
        self.next_id: dict[str, int] = {}
        #: ContactId -> {GroupId: DateCreated}
        self.assignments: dict[int, dict[int, datetime.datetime]] = {}
        self.files: dict[int, bytes] = {}
        self.settings: dict[tuple[str, str], str] = dict(_SETTINGS)
        commerce.seed(self.tables, self.next_id)
        self.commerce = commerce.Commerce(self.tables, self.next_id)
        for cid, name, description in _CATEGORIES:
            self._put(
                "ContactGroupCategory", cid, CategoryName=name, CategoryDescription=description
            )
        self._put("DataFormTab", 1, TabName="Custom Fields", FormId=-1)
        self._put("DataFormGroup", 1, Name="Custom Fields", TabId=1)
        for sid, name, order, days in _STAGES:
            self._put("Stage", sid, StageName=name, StageOrder=order, TargetNumDays=days)
        for uid, first, last, email in _USERS:
            self._put("User", uid, FirstName=first, LastName=last, Email=email, GlobalUserId=uid)
        for tid, name, description, category in _TAGS:
            self._put(
                "ContactGroup",
                tid,
                GroupName=name,
                GroupDescription=description,
                GroupCategoryId=category,
            )

    def setting(self, module: str, setting: str) -> str | None:
        """An app setting; module and setting names compare case-insensitively."""
        wanted = (module.casefold(), setting.casefold())
        for (m, s), value in self.settings.items():
            if (m.casefold(), s.casefold()) == wanted:
                return value
        return None

    def rows(self, table: str) -> list[Row]:
        """Every row of ``table`` in Id order, derived fields filled in. Raises NoTableFound."""
        fields_of(table, self.config.custom_fields)
        if table == "DataFormField":
            return self._form_fields()
        if table == "ContactGroupAssign":
            return [
                self._assign_row(cid, gid, when)
                for cid, tags in sorted(self.assignments.items())
                for gid, when in sorted(tags.items())
            ]
        return [
            self._materialize(table, rid, row) for rid, row in sorted(self.tables[table].items())
        ]

    def _form_fields(self) -> list[Row]:
        """DataFormField: one row per contact custom field (all text, in the one seeded
        group), with the ids the REST side gives them."""
        from shim.simulator.rest.store import custom_fields, field_label, field_name, field_type

        return [
            {"Id": cid, "FormId": -1, "GroupId": 1, "DataType": _DATA_TYPES.get(
                field_type(self, name), 15), "Name": field_name(name),
             "Label": field_label(self, name)}
            for cid, name in sorted(custom_fields(self))
        ]  # fmt: skip

    def get(self, table: str, record_id: int) -> Row:
        if table == "DataFormField":
            found = [row for row in self._form_fields() if row["Id"] == record_id]
            if not found:
                raise not_found()
            return found[0]
        fields_of(table, self.config.custom_fields)
        row = self.tables.get(table, {}).get(record_id)
        if row is None:
            raise not_found()
        return self._materialize(table, record_id, row)

    def add(self, table: str, data: Mapping[str, Value], now: float) -> int:
        values = {**commerce.DEFAULTS.get(table, {}), **self._writable(table, data)}
        if table == "OrderItem":  # a line on its order: invoice lines and totals follow
            return self.commerce.add_line(values, to_datetime(now))
        record_id = self.next_id.get(table, 1)
        if table in _STAMPED:
            values["DateCreated"] = values["LastUpdated"] = to_datetime(now)
        elif table == "ContactAction":
            values["DateCreated"] = to_datetime(now)
            values.setdefault("ObjectType", "Note")
        self._put(table, record_id, **values)
        if table == "Job":
            self.commerce.invoice_for_job(record_id, to_datetime(now))
        return record_id

    def update(self, table: str, record_id: int, data: Mapping[str, Value], now: float) -> int:
        values = self._writable(table, data)
        row = self.tables[table].get(record_id)
        if row is None:
            raise not_found()
        if table == "OrderItem":
            self.commerce.update_line(record_id, values, to_datetime(now))
            return record_id
        row.update(values)
        if table in _STAMPED:
            row["LastUpdated"] = to_datetime(now)
        return record_id

    def checked(self, table: str, data: Mapping[str, Value]) -> Row:
        """``data`` validated and coerced as ``add``/``update`` would store it (faults alike)."""
        return self._writable(table, data)

    def find_duplicate(self, option: str, values: Mapping[str, Value]) -> int | None:
        """The first contact matching ``values`` on ``option``'s fields (case-insensitive);
        none without an Email (both protocols then add a new contact)."""
        keys = DUPLICATE_KEYS[option]
        if not values.get("Email"):
            return None
        wanted = [_fold(values.get(key)) for key in keys]
        for record_id, row in sorted(self.tables["Contact"].items()):
            if [_fold(row.get(key)) for key in keys] == wanted:
                return record_id
        return None

    def merge(self, keep: int, dup: int, now: float) -> None:
        """Fold contact ``dup`` into ``keep``: its values fill ``keep``'s empty fields, its tags
        and files move over, then it is deleted (what Keap's merge keeps by default)."""
        primary, other = self.tables["Contact"].get(keep), self.tables["Contact"].get(dup)
        if primary is None or other is None:
            raise not_found()
        if keep == dup:
            raise invalid("A contact cannot be merged with itself")
        for name, value in other.items():
            if value not in (None, "") and primary.get(name) in (None, ""):
                primary[name] = value
        tags = self.assignments.setdefault(keep, {})
        for tag_id, when in self.assignments.get(dup, {}).items():
            tags[tag_id] = min(when, tags.get(tag_id, when))
        for owned in (*self.tables["FileBox"].values(), *self.tables["SocialAccount"].values()):
            if owned.get("ContactId") == dup:
                owned["ContactId"] = keep
        self.delete("Contact", dup)
        primary["LastUpdated"] = to_datetime(now)

    def delete(self, table: str, record_id: int) -> None:
        self._check_writable_table(table)
        if self.tables[table].pop(record_id, None) is None:
            raise not_found()
        for child, column in _OWNED.get(table, ()):
            rows = self.tables[child]
            for child_id in [k for k, row in rows.items() if row.get(column) == record_id]:
                del rows[child_id]
        if table == "Contact":
            self.assignments.pop(record_id, None)
        elif table == "ContactGroup":
            for tags in self.assignments.values():
                tags.pop(record_id, None)

    def assign(self, contact_id: int, tag_id: int, now: float, on: bool) -> None:
        """Add or remove a tag; both ids must exist (Keap answers RecordNotFound otherwise)."""
        if contact_id not in self.tables["Contact"] or tag_id not in self.tables["ContactGroup"]:
            raise not_found()
        tags = self.assignments.setdefault(contact_id, {})
        if on:
            tags.setdefault(tag_id, to_datetime(now))
        else:
            tags.pop(tag_id, None)

    def add_file(self, contact_id: int | None, name: str, data: bytes) -> int:
        if contact_id is not None and contact_id not in self.tables["Contact"]:
            raise not_found()
        file_id = self.next_id.get("FileBox", 1)
        extension = name.rpartition(".")[2] if "." in name else ""
        self._put(
            "FileBox",
            file_id,
            ContactId=contact_id,
            FileName=name,
            Extension=extension,
            FileSize=len(data),
            Public=0,
        )
        self.files[file_id] = data
        return file_id

    def _put(self, table: str, record_id: int, **values: Value) -> None:
        """Store a row; ids only grow (a deleted id is never reused)."""
        self.tables[table][record_id] = {"Id": record_id, **values}
        self.next_id[table] = max(self.next_id.get(table, 1), record_id + 1)

    def _check_writable_table(self, table: str) -> None:
        fields_of(table, self.config.custom_fields)
        if table in READ_ONLY_TABLES:
            raise KeapFault("NoTableAccess", f"Access denied to table {table}")

    def _writable(self, table: str, data: Mapping[str, Value]) -> Row:
        self._check_writable_table(table)
        fields = fields_of(table, self.config.custom_fields)
        values: Row = {}
        for name, value in data.items():
            spec = check_field(table, fields, name)
            if not spec.writable:
                raise KeapFault("NoFieldAccess", f"Field {table}.{name} is read-only")
            values[name] = coerce(table, name, spec, value)
        return values

    def _materialize(self, table: str, record_id: int, row: Row) -> Row:
        if table != "Contact":
            return dict(row)
        tags = self.assignments.get(record_id, {})
        return {**row, "Groups": ",".join(map(str, sorted(tags))) or None}

    def _assign_row(self, cid: int, gid: int, when: datetime.datetime) -> Row:
        contact = self.tables["Contact"][cid]
        return {
            "ContactId": cid,
            "GroupId": gid,
            "DateCreated": when,
            "ContactGroup": self.tables["ContactGroup"][gid].get("GroupName"),
            "Contact.Email": contact.get("Email"),
            "Contact.FirstName": contact.get("FirstName"),
            "Contact.LastName": contact.get("LastName"),
        }


def _fold(value: object) -> str:
    return "" if value is None else str(value).casefold()
