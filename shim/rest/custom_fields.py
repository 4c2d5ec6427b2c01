"""``DataService.addCustomField`` and ``updateCustomField`` over the REST v2 object models
(``POST``/``PATCH /{contacts,companies,opportunities}/model/customFields``).

Legacy ``addCustomField(form, label, dataType, headerId)`` named the record type
(``Contact``, ``Company``, ``Opportunity``), the type in CamelCase (``WholeNumber``) and the
group ("header") to put it in; REST takes the same in ``CreateCustomFieldRequest``
(``WHOLE_NUMBER``; ``group_id``, or REST's default group when 0). ``updateCustomField``
translates ``Label`` only (REST's update model also needs the field's group, read first).
The contact custom-field cache is dropped after either, so ``_Name`` works at once.
"""

from __future__ import annotations

import re
from typing import Any

from shim.errors import InvalidParameter, NotFound, NoTranslation
from shim.rest.context import Ctx
from shim.rest.spec import int_id
from shim.xmlrpc import Value

#: Legacy customFieldType -> REST model path.
FORMS = {"contact": "/contacts/model", "company": "/companies/model"}
FORMS |= {"opportunity": "/opportunities/model", "lead": "/opportunities/model"}
#: The REST field types (CreateCustomFieldRequest.field_type).
FIELD_TYPES = frozenset(
    {"CURRENCY", "DATE", "DATE_TIME", "DAY_OF_WEEK", "DECIMAL_NUMBER", "DRILLDOWN", "DROPDOWN"}
    | {"EMAIL", "LIST_BOX", "MONTH", "NAME", "PERCENT", "PHONE_NUMBER", "RADIO", "STATE"}
    | {"SOCIAL_SECURITY_NUMBER", "TEXT", "TEXT_AREA", "USER", "USER_LIST_BOX", "WEBSITE"}
    | {"WHOLE_NUMBER", "YEAR", "YES_NO"}
)


def rest_type(data_type: str) -> str:
    """Legacy ``WholeNumber`` -> REST ``WHOLE_NUMBER`` (refused if REST has no such type)."""
    kind = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", data_type.strip()).upper()
    if kind not in FIELD_TYPES:
        raise InvalidParameter(f"Invalid custom field type: {data_type}")
    return kind


def _model(form: str) -> str:
    path = FORMS.get(form.strip().casefold())
    if path is None:
        raise NoTranslation(
            f"DataService.addCustomField for {form} custom fields has no REST v2 translation "
            "(REST v2 has custom fields on contacts, companies and opportunities)"
        )
    return path


async def add_custom_field(
    ctx: Ctx, form: str, display: str, data_type: str, header_id: int
) -> int:
    path = _model(form)
    body: dict[str, Any] = {"label": display, "field_type": rest_type(data_type)}
    if header_id > 0:
        body["group_id"] = str(header_id)
    answer = await ctx.client.json("POST", f"{path}/customFields", json_body=body)
    field = answer.get("custom_field") if isinstance(answer, dict) else None
    field_id = int_id(field.get("id")) if isinstance(field, dict) else None
    ctx.state.models.pop(ctx.account, None)
    if field_id is None:
        raise NotFound("Keap REST answered without the new custom field's id")
    return field_id


async def update_custom_field(ctx: Ctx, field_id: int, values: dict[str, Value]) -> bool:
    unknown = sorted(set(values) - {"Label"})
    if unknown:
        raise NoTranslation(
            f"DataService.updateCustomField: {', '.join(unknown)} has no REST v2 translation "
            "(only Label is translated)"
        )
    model = await ctx.client.get("/contacts/model")
    fields = model.get("custom_fields") if isinstance(model, dict) else None
    current = next(
        (f for f in fields or [] if isinstance(f, dict) and str(f.get("id")) == str(field_id)),
        None,
    )
    if current is None:
        raise NotFound()
    body: dict[str, Any] = {"group_id": str(current.get("group_id") or "")}
    if values.get("Label"):
        body["label"] = str(values["Label"])
    await ctx.client.json("PATCH", f"/contacts/model/customFields/{field_id}", json_body=body)
    ctx.state.models.pop(ctx.account, None)
    return True
