"""What the legacy XML-RPC API did, so a translated call answers like it without asking Keap.

Keap's XML-RPC service ran on Apache XML-RPC (Java) over MySQL. Its answers had rules a
translation must keep: a call whose argument types fit no overload got "No method matching
arguments" naming the Java types; written values were coerced to the field's type (numeric
strings for number fields, numbers for text fields, several date formats) or refused with
``[InvalidParameter]``; unknown tables and fields got ``[NoTableFound]``/``[NoFieldFound]``.
These are checked here, locally, before any REST request, so a bad call costs nothing.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal

from shim.errors import InvalidParameter, NoFieldAccess, NoFieldFound, NoFields
from shim.xmlrpc import Value

FieldType = Literal["int", "str", "date", "float"]


@dataclass(frozen=True)
class FieldSpec:
    """A legacy field's type and whether the legacy API let scripts write it."""

    type: FieldType
    writable: bool = True


#: Legacy tables keyshim knows exist besides Contact and the tag tables (a call on one that
#: ``shim/rest/tables.py`` does not translate gets ``[NoRestTranslation]`` naming it; a name
#: neither here nor translated is ``[NoTableFound]``).
OTHER_TABLES = frozenset(
    {"ActionSequence", "AffResource", "Affiliate", "CCharge", "CProgram", "Campaign"}
    | {"CampaignStep", "Campaignee", "Company", "ContactAction", "CreditCard", "DataFormField"}
    | {"DataFormGroup", "DataFormTab", "Expense", "FileBox", "GroupAssign", "Invoice"}
    | {"InvoiceItem", "InvoicePayment", "Job", "JobRecurringInstance", "Lead", "LeadSource"}
    | {"LeadSourceCategory", "LeadSourceExpense", "LeadSourceRecurringExpense", "MtgLead"}
    | {"OrderItem", "PayPlan", "PayPlanItem", "Payment", "Product", "ProductCategory"}
    | {"ProductCategoryAssign", "ProductInterest", "ProductInterestBundle", "ProductOptValue"}
    | {"ProductOption", "RecurringOrder", "RecurringOrderWithContact", "Referral"}
    | {"SavedFilter", "Stage", "StageMove", "Status", "SubscriptionPlan", "Template", "Ticket"}
    | {"TicketStage", "TicketType", "User", "UserGroup"}
)

_DATE_FORMATS = ("%Y%m%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d")


def is_empty(value: Value) -> bool:
    """Legacy answers leave out fields that are null or empty strings."""
    return value is None or value == ""


def parse_date(text: str) -> datetime.datetime | None:
    """A date string in one of the formats the legacy API accepted, else None."""
    for fmt in _DATE_FORMATS:
        try:
            return datetime.datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
    return None


def coerce(table: str, name: str, spec: FieldSpec, value: Value) -> Value:
    """A written value in the field's type (None clears), as the legacy API converted it."""
    if is_empty(value):
        return None
    if spec.type == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
    elif spec.type == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
    elif spec.type == "str":
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    elif isinstance(value, datetime.datetime):
        return value.replace(tzinfo=None)
    elif isinstance(value, str) and (parsed := parse_date(value)) is not None:
        return parsed
    raise InvalidParameter(f"Invalid value for {table}.{name}: {value!r}")


def field(table: str, fields: dict[str, FieldSpec], name: str) -> FieldSpec:
    spec = fields.get(name)
    if spec is None:
        raise NoFieldFound(f"No field found: {table}.{name}")
    return spec


def check_fields(table: str, fields: dict[str, FieldSpec], names: list[str]) -> None:
    """The legacy checks of a list of fields to return: not empty, every one known."""
    if not names:
        raise NoFields("No fields were requested")
    for name in names:
        field(table, fields, name)


def writable(table: str, fields: dict[str, FieldSpec], data: dict[str, Value]) -> dict[str, Value]:
    """``data`` checked and coerced the way the legacy API did before it wrote anything."""
    values: dict[str, Value] = {}
    for name, value in data.items():
        spec = field(table, fields, name)
        if not spec.writable:
            raise NoFieldAccess(f"Field {table}.{name} is read-only")
        values[name] = coerce(table, name, spec, value)
    return values


# --- Keap's Java dispatcher -------------------------------------------------------------

_JAVA_TYPES: list[tuple[type, str]] = [
    (bool, "java.lang.Boolean"),
    (int, "java.lang.Integer"),
    (float, "java.lang.Double"),
    (str, "java.lang.String"),
    (bytes, "[B"),
    (datetime.datetime, "java.util.Date"),
    (dict, "java.util.HashMap"),
    (list, "[Ljava.lang.Object;"),
]


def check_signature(params: list[Value], signatures: tuple[str, ...]) -> None:
    """Fault like Keap when the arguments (after the key) fit none of the method's overloads.

    Signature letters: ``i`` int, ``s`` string, ``S`` struct, ``L`` list of strings, ``A``
    any list, ``b`` boolean, ``B`` file data (base64 string or ``<base64>``), ``d`` dateTime,
    ``f`` double (or int), ``*`` any scalar; optional ones after ``|``. The message names the
    Java types of every parameter, key included.
    """
    args = params[1:]
    if any(_fits(sig, args) for sig in signatures):
        return
    names = []
    for value in params:
        names.append(next((java for py, java in _JAVA_TYPES if isinstance(value, py)), "null"))
    raise InvalidParameter("No method matching arguments: " + ", ".join(names))


def _fits(signature: str, args: list[Value]) -> bool:
    required, _, optional = signature.partition("|")
    if not len(required) <= len(args) <= len(required) + len(optional):
        return False
    return all(_is(code, arg) for code, arg in zip(required + optional, args, strict=False))


def _is(code: str, value: Value) -> bool:
    if code == "i":
        return isinstance(value, int) and not isinstance(value, bool)
    if code == "s":
        return isinstance(value, str)
    if code == "b":
        return isinstance(value, bool)
    if code == "S":
        return isinstance(value, dict)
    if code == "L":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if code == "A":
        return isinstance(value, list)
    if code == "B":
        return isinstance(value, (str, bytes))
    if code in "df":  # dateTime, double (an int is widened, as Java does)
        kinds = {"d": (datetime.datetime,), "f": (float, int)}[code]
        return isinstance(value, kinds) and not isinstance(value, bool)
    return isinstance(value, (int, float, str, datetime.datetime))  # "*"
