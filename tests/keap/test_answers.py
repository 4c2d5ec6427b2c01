"""The one answer → fault table, for both of Keap's APIs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from shim.errors import (
    DatabaseError,
    InvalidParameter,
    NoAccess,
    NotFound,
    ShimError,
    UpstreamAuthError,
    UpstreamError,
    UpstreamThrottled,
)
from shim.keap import answers
from shim.keap.client import UpstreamResponse


class _NoBody:
    async def raw(self) -> AsyncIterator[bytes]:
        yield b""

    async def decoded(self) -> AsyncIterator[bytes]:
        yield b""

    async def aclose(self) -> None:
        return None


def answer(status: int, **headers: str) -> UpstreamResponse:
    return UpstreamResponse(status, headers, _NoBody())


FAULT = json.dumps({"fault": {"faultstring": "[Old]gone away"}}).encode()
MESSAGE = json.dumps({"message": "no such contact"}).encode()


@pytest.mark.parametrize(
    "status,kind",
    [
        (400, InvalidParameter),
        (401, UpstreamAuthError),
        (403, NoAccess),
        (404, NotFound),
        (409, DatabaseError),
        (429, UpstreamThrottled),
        (500, UpstreamError),
        (405, UpstreamError),
    ],
)
def test_rest_maps_every_row(status: int, kind: type[ShimError]) -> None:
    assert type(answers.fault_for(answers.REST, answer(status), MESSAGE)) is kind


@pytest.mark.parametrize("status", [400, 403, 404, 409, 410, 503])
def test_xmlrpc_maps_only_auth_and_throttling(status: int) -> None:
    fault = answers.fault_for(answers.XMLRPC, answer(status), b"")
    assert type(fault) is UpstreamError
    assert fault.message == f"Keap answered HTTP {status}"


def test_messages_keap_tags_and_retry_after() -> None:
    xml = answers.fault_for(answers.XMLRPC, answer(401), FAULT)
    assert xml.message == "Keap rejected the credential (HTTP 401: [Old]gone away)"
    rest = answers.fault_for(answers.REST, answer(401), FAULT)
    assert rest.message == "Keap rejected the credential (HTTP 401: gone away)"
    throttled = answers.fault_for(answers.REST, answer(429, **{"retry-after": "7"}), b"")
    assert isinstance(throttled, UpstreamThrottled) and throttled.retry_after == 7
    assert throttled.message == "Keap is throttling calls (HTTP 429); retry after 7s"
    assert answers.fault_for(answers.REST, answer(400), b"not json").message == (
        "Keap refused the request (HTTP 400)"
    )
    assert answers.fault_for(answers.REST, answer(502), MESSAGE).message == (
        "Keap REST answered HTTP 502: no such contact"
    )
