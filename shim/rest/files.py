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

from shim.errors import InvalidParameter, NotFound
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


async def upload_file(ctx: Ctx, *args: object) -> int:
    """``uploadFile(contactId, name, data)`` or ``uploadFile(name, data)``: with a contact the
    file is the contact's (``file_association`` CONTACT); without one (or contact 0) it goes to
    the authenticated user's file box (USER), as the legacy two-argument form did."""
    contact_id = args[0] if len(args) == 3 else 0
    name, data = args[-2], args[-1]
    assert isinstance(contact_id, int) and isinstance(name, str)
    assert isinstance(data, (str, bytes))
    payload = data if isinstance(data, bytes) else _decode(data)
    multipart: dict[str, str | tuple[str, bytes, str]] = {
        "file": (name, payload, "application/octet-stream"),
        "file_name": name,
        "file_association": "CONTACT" if contact_id > 0 else "USER",
        "is_public": "false",
    }
    if contact_id > 0:
        multipart["contact_id"] = str(contact_id)
    return contact_id_of(await ctx.client.json("POST", "/files", multipart=multipart))


async def replace_file(ctx: Ctx, file_id: int, data: str | bytes) -> bool:
    """``POST /files/{id}`` (REST's update uses POST) with the new content."""
    if file_id < 1:
        raise NotFound()
    payload = data if isinstance(data, bytes) else _decode(data)
    current = await ctx.client.get(f"/files/{file_id}")
    name = str(current.get("file_name") or "file") if isinstance(current, dict) else "file"
    multipart: dict[str, str | tuple[str, bytes, str]] = {
        "file": (name, payload, "application/octet-stream")
    }
    await ctx.client.json(
        "POST", f"/files/{file_id}", params=[("update_mask", "file")], multipart=multipart
    )
    return True


async def rename_file(ctx: Ctx, file_id: int, name: str) -> bool:
    if file_id < 1:
        raise NotFound()
    if not name.strip():
        raise InvalidParameter("fileName must not be empty")
    multipart: dict[str, str | tuple[str, bytes, str]] = {"file_name": name}
    await ctx.client.json(
        "POST", f"/files/{file_id}", params=[("update_mask", "file_name")], multipart=multipart
    )
    return True


def _decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        raise InvalidParameter("fileData is not valid base64") from None
