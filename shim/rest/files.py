"""FileService over ``/files``: downloads streamed as base64, uploads as multipart.

A legacy ``getFile`` answer is one base64 string that can be tens of MB. keyshim never holds
the file (or its base64) whole: REST's bytes are encoded chunk by chunk, three bytes at a
time carried over between chunks, and sent to the script as they come.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass

from shim.errors import InvalidParameter, NotFound, NoTranslation
from shim.keap.client import UpstreamResponse
from shim.rest.contacts import contact_id_of
from shim.rest.context import Ctx


@dataclass
class Streamed:
    """A legacy string answer whose text is the base64 of a REST download."""

    response: UpstreamResponse

    async def base64_chunks(self) -> AsyncIterator[bytes]:
        carry = b""
        try:
            async for chunk in self.response.iter_decoded():
                data = carry + chunk if carry else chunk
                cut = len(data) - len(data) % 3
                carry = data[cut:]
                if cut:
                    yield base64.b64encode(data[:cut])
            if carry:
                yield base64.b64encode(carry)
        finally:
            await self.response.aclose()


async def get_file(ctx: Ctx, file_id: int) -> Streamed:
    if file_id < 1:
        raise NotFound()
    return Streamed(await ctx.client.open("GET", f"/files/{file_id}:data"))


def uploads_to_contact(args: list[object]) -> bool:
    """Only ``uploadFile(contactId, name, data)`` with a contact translates: REST files need
    an association, and the two-argument form has no known one (docs/keap.md#services)."""
    return len(args) == 3 and isinstance(args[0], int) and args[0] > 0


async def upload_file(ctx: Ctx, *args: object) -> int:
    if not uploads_to_contact(list(args)):
        raise NoTranslation(
            "FileService.uploadFile without a contact has no REST v2 translation "
            "(REST files must be associated with a contact, user or company)"
        )
    contact_id, name, data = args
    assert isinstance(name, str) and isinstance(data, (str, bytes))
    payload = data if isinstance(data, bytes) else _decode(data)
    multipart: dict[str, str | tuple[str, bytes, str]] = {
        "file": (name, payload, "application/octet-stream"),
        "file_name": name,
        "file_association": "CONTACT",
        "contact_id": str(contact_id),
        "is_public": "false",
    }
    return contact_id_of(await ctx.client.json("POST", "/files", multipart=multipart))


def _decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        raise InvalidParameter("fileData is not valid base64") from None
