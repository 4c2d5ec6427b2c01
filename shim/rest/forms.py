"""Custom-field metadata: ``DataFormField``, ``DataFormGroup`` and ``DataFormTab`` (read-only
here) over ``/contacts/model`` and its custom-field groups and tabs (SDK models
``ObjectModel``, ``CustomFieldMetaData``, ``CustomFieldGroup``, ``CustomFieldTab``).

Only contact custom fields are translated (legacy ``FormId`` -1); legacy ``Name`` is REST
``field_name`` (the column name without the API's leading ``_``). ``DataType`` is the
legacy number of the REST ``field_type`` (the numbering of Keap's table documentation as
recalled by community SDKs: unverified, so marked approximate).
"""

from __future__ import annotations

from shim.rest.spec import Column, TableSpec, missing, rest_only

CONTACT_FORM = -1
#: REST field_type -> legacy DataFormField.DataType.
DATA_TYPES: dict[str, int] = {
    "PHONE_NUMBER": 1, "SOCIAL_SECURITY_NUMBER": 2, "CURRENCY": 3, "PERCENT": 4, "STATE": 5,
    "YES_NO": 6, "YEAR": 7, "MONTH": 8, "DAY_OF_WEEK": 9, "NAME": 10, "DECIMAL_NUMBER": 11,
    "WHOLE_NUMBER": 12, "DATE": 13, "DATE_TIME": 14, "TEXT": 15, "TEXT_AREA": 16,
    "LIST_BOX": 17, "WEBSITE": 18, "EMAIL": 19, "RADIO": 20, "DROPDOWN": 21, "USER": 22,
    "DRILLDOWN": 23, "USER_LIST_BOX": 25,
}  # fmt: skip
_READ_ONLY = "read-only here: custom fields are written by DataService.addCustomField"

DATA_FORM_FIELD = TableSpec(
    "DataFormField",
    "/contacts/model",
    "custom_fields",
    {
        "Id": rest_only("int", "id"),
        "FormId": Column("int", None, writable=False, const=CONTACT_FORM,
                         note="always -1 (contact fields)"),
        "Name": rest_only("str", "field_name"),
        "Label": rest_only("str", "label"),
        "DataType": rest_only("int", "field_type", codes=DATA_TYPES),
        "GroupId": rest_only("int", "group_id"),
        "DefaultValue": rest_only("str", "default_value"),
        "Values": missing("str", "option lists are not translated", writable=False),
        "ListRows": missing("int", writable=False),
    },
    legacy_read_only=True,
    writes=frozenset(),
    load_by_list=True,
    fidelity="approximate",
    notes="contact custom fields only; DataType numbers unverified; " + _READ_ONLY,
)  # fmt: skip
DATA_FORM_GROUP = TableSpec(
    "DataFormGroup",
    "/contacts/model/customFields/groups",
    "groups",
    {
        "Id": rest_only("int", "id"),
        "Name": rest_only("str", "name"),
        "TabId": rest_only("int", "tab_id"),
    },
    legacy_read_only=True,
    writes=frozenset(),
    load_by_list=True,
    fidelity="approximate",
    notes="contact custom-field groups only",
)
DATA_FORM_TAB = TableSpec(
    "DataFormTab",
    "/contacts/model/customFields/tabs",
    "tabs",
    {
        "Id": rest_only("int", "id"),
        "TabName": rest_only("str", "name"),
        "FormId": Column("int", None, writable=False, const=CONTACT_FORM),
    },
    legacy_read_only=True,
    writes=frozenset(),
    load_by_list=True,
    fidelity="approximate",
    notes="contact custom-field tabs only",
)
