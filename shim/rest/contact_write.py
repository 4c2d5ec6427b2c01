"""A legacy Contact write as REST v2 pieces, and the merge that REST's whole-array
replacement makes necessary.

REST replaces ``email_addresses``, ``phone_numbers``, ``fax_numbers``, ``addresses``,
``custom_fields`` (and ``company``, an object) whole: "Any item not listed here will be
removed". A legacy write of one slot is therefore merged into what the contact holds now;
``touched`` is what the caller compares after writing to see whether the change survived.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shim.errors import NoTranslation
from shim.rest.contact_map import ARRAY_ATTRS, FIELDS, REQUIRED_ATTR, CustomField, to_rest
from shim.xmlrpc import Value


@dataclass
class Write:
    """A legacy write as REST pieces: plain properties, array slots, company, custom fields."""

    scalars: dict[str, Any] = field(default_factory=dict)
    slots: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    company: dict[str, Any] = field(default_factory=dict)
    custom: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, values: Mapping[str, Value], custom: Mapping[str, CustomField]) -> Write:
        """``values`` already checked and coerced (legacy.writable)."""
        write = cls()
        for name, value in values.items():
            mapped = FIELDS.get(name)
            if mapped is None:
                cf = custom[name]
                write.custom[cf.id] = to_rest(value, cf.type, None)
                continue
            if not mapped.rest_writable or mapped.prop is None:
                raise NoTranslation(
                    f"Contact.{name} cannot be written through REST v2 ({mapped.note})"
                )
            rest = to_rest(value, mapped.type, mapped.prop)
            if mapped.slot is not None:
                write.slots.setdefault((mapped.prop, mapped.slot), {})[mapped.attr or ""] = rest
            elif mapped.prop == "company":
                write.company[mapped.attr or ""] = rest
            else:
                write.scalars[mapped.prop] = rest
        return write

    @property
    def merged_props(self) -> list[str]:
        """Properties REST replaces whole, so they must be read and merged first."""
        props = {prop for prop, _ in self.slots}
        if len(self.company) == 1:
            props.add("company")
        if self.custom:
            props.add("custom_fields")
        return sorted(props)

    def create_body(self) -> dict[str, Any]:
        body = {k: v for k, v in self.scalars.items() if v is not None}
        return {**body, **self._merged({})}

    def patch_body(self, current: Mapping[str, Any]) -> dict[str, Any]:
        return {**self.scalars, **self._merged(current)}

    def mask(self) -> list[str]:
        props = [*self.scalars, *(prop for prop, _ in self.slots)]
        if self.company:
            props.append("company")
        if self.custom:
            props.append("custom_fields")
        return list(dict.fromkeys(props))

    def _merged(self, current: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for prop in dict.fromkeys(prop for prop, _ in self.slots):
            out[prop] = self._items(prop, current.get(prop))
        if self.company:
            base = _object(current.get("company"))
            company = {k: base.get(k) for k in ("id", "company_name")} | self.company
            company = {k: v for k, v in company.items() if v not in (None, "")}
            out["company"] = company or None
        if self.custom:
            values = {
                str(item.get("id")): item.get("content")
                for item in current.get("custom_fields") or []
                if isinstance(item, dict)
            } | self.custom
            out["custom_fields"] = [
                {"id": cid, "content": v} for cid, v in values.items() if v not in (None, "")
            ]
        return out

    def _items(self, prop: str, existing: Any) -> list[dict[str, Any]]:
        attrs = ARRAY_ATTRS[prop]
        slots: dict[str, dict[str, Any]] = {}
        for item in existing or []:
            if isinstance(item, dict) and item.get("field"):
                slots[str(item["field"])] = {a: item.get(a) for a in attrs}
        for (p, slot), values in self.slots.items():
            if p == prop:
                slots.setdefault(slot, {}).update(values)
        required = REQUIRED_ATTR.get(prop)
        items = []
        for slot, values in slots.items():
            kept = {a: v for a, v in values.items() if v not in (None, "")}
            if kept and (required is None or required in kept):
                items.append({"field": slot, **kept})
        return items

    def touched(self, contact: Mapping[str, Any]) -> list[Any]:
        """The values of what this write changed, as ``contact`` holds them."""
        out: list[Any] = []
        for (prop, slot), values in sorted(self.slots.items()):
            item = next(
                (
                    i
                    for i in contact.get(prop) or []
                    if isinstance(i, dict) and i.get("field") == slot
                ),
                {},
            )
            out.extend(item.get(attr) or None for attr in sorted(values))
        company = _object(contact.get("company"))
        out.extend(company.get(attr) or None for attr in sorted(self.company))
        contents = {
            str(i.get("id")): i.get("content")
            for i in contact.get("custom_fields") or []
            if isinstance(i, dict)
        }
        out.extend(contents.get(cid) or None for cid in sorted(self.custom))
        return out


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
