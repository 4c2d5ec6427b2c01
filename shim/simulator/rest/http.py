"""Plumbing every REST v2 handler shares: the call, the error body, ids, times, JSON checks.

Keap's v2 API is generated from an OpenAPI description in Google's AIP style (``page_token``,
``update_mask``, ``:merge`` custom verbs), so the error body is AIP-like too:
``{"code": int, "message": str, "status": str, "details": [{"domain", "resource"}]}``. The
``status`` value set is not published (docs/keap.md#open-questions, 4); the simulator uses the gRPC
canonical names (``INVALID_ARGUMENT``, ``NOT_FOUND``...) that shape implies.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from shim.simulator.asgi import Answer, Request, json_answer
from shim.simulator.config import SimConfig
from shim.simulator.data import Database
from shim.simulator.rest.store import RestStore

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
}

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:?\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class RestError(Exception):
    """A refused REST request: raised anywhere in a handler, answered by the endpoint."""

    def __init__(
        self, status: int, message: str, domain: str | None = None, resource: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = [] if domain is None else [{"domain": domain, "resource": resource or ""}]

    def answer(self, headers: list[tuple[str, str]] | None = None) -> Answer:
        body = {
            "code": self.status,
            "message": self.message,
            "status": STATUS_NAMES.get(self.status, "UNKNOWN"),
            "details": self.details,
        }
        return json_answer(self.status, body, headers)


def bad(message: str, domain: str | None = None, resource: str | None = None) -> RestError:
    return RestError(400, message, domain, resource)


def missing(domain: str, resource: object) -> RestError:
    return RestError(404, f"{domain.capitalize()} {resource} not found", domain, str(resource))


@dataclass
class Call:
    """One routed REST request: the shared data, the request and its path parameters."""

    db: Database
    store: RestStore
    config: SimConfig
    now: float
    request: Request
    params: dict[str, str]
    #: Every query parameter in order, repeats kept (``update_mask`` comes repeated).
    query: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        db: Database,
        store: RestStore,
        config: SimConfig,
        now: float,
        request: Request,
        params: dict[str, str],
        query_string: bytes,
    ) -> Call:
        query = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
        return cls(db, store, config, now, request, params, query)

    def arg(self, name: str) -> str | None:
        """The last value of a query parameter (None if absent)."""
        values = [v for k, v in self.query if k == name]
        return values[-1] if values else None

    def args(self, name: str) -> list[str] | None:
        """A list parameter sent repeated, as CSV, or both (None if absent)."""
        values = [v for k, v in self.query if k == name]
        if not values:
            return None
        return [item.strip() for v in values for item in v.split(",") if item.strip()]

    def path_id(self, name: str, domain: str) -> int:
        return parse_id(self.params[name], domain)

    def body(self) -> dict[str, Any]:
        """The JSON object body; anything else is a 400."""
        try:
            data = self.request.json()
        except ValueError:
            raise bad("The request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise bad("The request body must be a JSON object")
        return data


def parse_id(text: object, domain: str) -> int:
    """A REST id (a string of digits; JSON numbers are tolerated) as the legacy int."""
    if isinstance(text, int) and not isinstance(text, bool) and text > 0:
        return text
    if isinstance(text, str) and text.isascii() and text.isdigit() and int(text) > 0:
        return int(text)
    raise bad(f"Invalid {domain} id: {text!r}", domain, str(text))


def row_id(row: Mapping[str, object]) -> int:
    """A legacy row's ``Id`` (always an int once stored)."""
    record_id = row["Id"]
    assert isinstance(record_id, int)
    return record_id


def rest_id(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def iso(value: object) -> str | None:
    """A legacy (naive UTC) datetime as REST's ISO-8601 time, milliseconds and ``Z`` included."""
    if not isinstance(value, datetime.datetime):
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_time(text: str, name: str) -> datetime.datetime:
    """A full ISO-8601 date-time with a zone (filters reject date-only values) → naive UTC."""
    if not _ISO.match(text):
        raise bad(f"Invalid date-time for {name}: {text!r} (use e.g. 2026-01-01T00:00:00.000Z)")
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)


def parse_date(text: str, name: str) -> datetime.datetime:
    """A REST date (``YYYY-MM-DD``, or a full date-time whose day is taken) as a legacy date."""
    if _DATE.match(text):
        try:
            return datetime.datetime.strptime(text, "%Y-%m-%d")
        except ValueError:
            raise bad(f"Invalid date for {name}: {text!r}") from None
    return parse_time(text, name).replace(hour=0, minute=0, second=0, microsecond=0)


def check_keys(data: Mapping[str, Any], allowed: frozenset[str] | set[str], what: str) -> None:
    """Refuse unknown properties: a misspelt field silently dropped would hide a bug."""
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise bad(f"Unknown {what} properties: {', '.join(unknown)}", what, unknown[0])


def optional_str(data: Mapping[str, Any], key: str, limit: int | None = None) -> str | None:
    """A string property (null and "" clear the field); other JSON types are a 400."""
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise bad(f"{key} must be a string", key)
    if limit is not None and len(value) > limit:
        raise bad(f"{key} is longer than {limit} characters", key)
    return value


def no_content() -> Answer:
    return Answer(204, b"")
