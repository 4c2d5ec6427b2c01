"""The order translations' own rules, on a scripted REST client: the invoice -> order cache,
both shapes a declined charge may take, and what is refused before any request."""

from __future__ import annotations

from typing import Any

import pytest

from shim.errors import InvalidParameter, NotFound
from shim.rest import orders
from shim.rest.context import Ctx, RestState

pytestmark = pytest.mark.anyio

ORDER = {
    "id": "7",
    "invoice_id": "501",
    "contact": {"id": "1"},
    "total": {"amount": 2500},
    "total_paid": {"amount": 500},
}


class Script:
    """A RestClient stand-in: answers by (method, path), records every request."""

    def __init__(self, answers: dict[tuple[str, str], Any]) -> None:
        self.answers = answers
        self.sent: list[tuple[str, str, Any, Any]] = []
        self.account = type("A", (), {"name": "acct"})()

    async def json(
        self, method: str, path: str, *, params: Any = (), json_body: Any = None, **_: Any
    ) -> Any:
        self.sent.append((method, path, list(params), json_body))
        answer = self.answers[(method, path)]
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def get(self, path: str, params: Any = ()) -> Any:
        return await self.json("GET", path, params=params)


def _ctx(answers: dict[tuple[str, str], Any], state: RestState | None = None) -> Ctx:
    client = Script(answers)
    return Ctx(client, state or RestState(), None, "test")  # type: ignore[arg-type]


def _sent(ctx: Ctx) -> list[tuple[str, str, Any, Any]]:
    return ctx.client.sent  # type: ignore[attr-defined,no-any-return]


async def test_invoice_is_resolved_once_then_cached() -> None:
    answers = {
        ("GET", "/orders"): {"orders": [ORDER]},
        ("POST", "/orders/7/items"): {"id": "1"},
    }
    ctx = _ctx(answers)
    for _ in range(3):
        assert await orders.add_order_item(ctx, 501, 21, 4, 12.5, 1, "x", "") is True
    paths = [(m, p) for m, p, _, _ in _sent(ctx)]
    assert paths == [("GET", "/orders")] + [("POST", "/orders/7/items")] * 3
    assert _sent(ctx)[0][2] == [("filter", "invoice_id==501"), ("page_size", "1")]
    assert _sent(ctx)[1][3] == {
        "quantity": 1,
        "item_type": "PRODUCT",
        "price_per_unit": 12.5,
        "product_id": "21",
        "description": "x",
    }


async def test_an_order_of_another_invoice_is_not_taken() -> None:
    ctx = _ctx({("GET", "/orders"): {"orders": [{**ORDER, "invoice_id": "502"}]}})
    with pytest.raises(NotFound):
        await orders.get_order_id(ctx, 501)


@pytest.mark.parametrize(
    "payment",
    [
        InvalidParameter("Card declined: insufficient funds"),
        {"id": "3", "payment_status_message": "Card declined: insufficient funds"},
    ],
)
async def test_a_decline_is_a_result_in_either_shape(payment: Any) -> None:
    answers = {
        ("GET", "/orders"): {"orders": [ORDER]},
        ("GET", "/paymentMethods"): {"payment_methods": [{"payment_method_id": "pm_1"}]},
        ("POST", "/orders/7/payments"): payment,
    }
    ctx = _ctx(answers)
    result = await orders.charge_invoice(ctx, 501, "note", 81, 0, False)
    assert result == {
        "Successful": False,
        "Code": "DECLINED",
        "RefNum": "",
        "Message": "Card declined: insufficient funds",
    }
    body = _sent(ctx)[-1][3]
    assert body["payment_amount"] == 20.0 and body["payment_method_id"] == "pm_1"
    assert _sent(ctx)[1][2] == [("filter", "credit_card_id==81;contact_id==1")]


async def test_legacy_checks_cost_no_request() -> None:
    state = RestState()
    state.orders[("acct", 501)] = "7"
    ctx = _ctx({}, state)
    for args, message in [
        ((21, 99, 1.0, 1), "Invalid order item type: 99"),
        ((21, 4, 1.0, 0), "Quantity must be at least 1"),
        ((0, 4, 1.0, 1), "A product item needs a product"),
    ]:
        with pytest.raises(InvalidParameter, match=message):
            await orders.add_order_item(ctx, 501, *args, "", "")
    assert _sent(ctx) == []
    assert not orders.item_covered([501, 41, 9, 1.0, 1, "", ""])
    assert not orders.recurring_covered([1, False, 41, 0, 81, 0, 3])
    assert not orders.place_covered([1, 81, 0, [21], [41], False, []])
    assert orders.place_covered([1, 81, 0, [21], [], False, []])
    assert orders.place_why_not([1, 81, 3, [21], [41], False, []]) == (
        " with a pay plan or subscription plans"
    )
    assert orders.recurring_why_not([1, False, 41, 0, 81, 0, 3]).endswith("other than 0")


async def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(orders, "CACHE_SIZE", 2)
    ctx = _ctx({})
    for invoice in (1, 2, 3):
        orders.remember(ctx, invoice, str(invoice))
    assert list(ctx.state.orders) == [("acct", 2), ("acct", 3)]
