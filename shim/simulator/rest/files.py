"""Files: ``POST /files`` (multipart upload), metadata, delete, and ``GET /files/{id}:data``.

Uploads land in the same FileBox rows and byte store as ``FileService.uploadFile``, so a file
uploaded one way downloads the other. Bodies can be tens of MB: the multipart parser finds
part boundaries with ``bytes.find`` (C speed) and copies the file part once; the download
answers with the stored bytes object itself, never a copy or an encoding.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shim.simulator.asgi import Answer, json_answer
from shim.simulator.data import Database, Row, to_datetime
from shim.simulator.rest.http import Call, bad, iso, missing, no_content, parse_id, row_id

ASSOCIATIONS = ("CONTACT", "USER", "COMPANY")
_PARAM = re.compile(r';\s*([\w*]+)="?([^";]*)"?')


@dataclass(frozen=True)
class Part:
    data: bytes
    filename: str | None


def create(call: Call) -> Answer:
    """201 with the file's metadata; ``contact_id`` is required (and must exist) for CONTACT."""
    parts = parse_multipart(call.request.body, call.request.headers.get("content-type", ""))
    upload = parts.get("file")
    if upload is None:
        raise bad("The multipart body has no file part", "file")
    name = _text(parts, "file_name") or upload.filename
    if not name:
        raise bad("file_name is required", "file_name")
    association = _text(parts, "file_association")
    if association not in ASSOCIATIONS:
        raise bad(f"file_association must be one of {', '.join(ASSOCIATIONS)}", "file")
    contact_text = _text(parts, "contact_id")
    contact_id = None if not contact_text else parse_id(contact_text, "contact")
    if association == "CONTACT" and contact_id is None:
        raise bad("contact_id is required when file_association is CONTACT", "contact_id")
    if contact_id is not None and contact_id not in call.db.tables["Contact"]:
        raise missing("contact", contact_id)
    public = (_text(parts, "is_public") or "false").lower()
    if public not in ("true", "false"):
        raise bad("is_public must be true or false", "is_public")
    file_id = call.db.add_file(contact_id, name, upload.data)
    call.db.tables["FileBox"][file_id]["Public"] = int(public == "true")
    call.store.touch("FileBox", file_id, to_datetime(call.now))
    return json_answer(201, _metadata(call, _row(call, file_id)))


def get(call: Call) -> Answer:
    return json_answer(200, _metadata(call, _row(call, call.path_id("file_id", "file"))))


def update(call: Call) -> Answer:
    """``POST /files/{id}`` (multipart): a new ``file`` part, ``file_name``, ``is_public``;
    ``update_mask`` limits which are applied."""
    row = _row(call, call.path_id("file_id", "file"))
    file_id = row_id(row)
    parts = parse_multipart(call.request.body, call.request.headers.get("content-type", ""))
    mask = call.args("update_mask")
    wanted = set(parts) if mask is None else set(mask)
    if "file" in wanted and "file" in parts:
        replace_content(call.db, file_id, parts["file"].data)
    name = _text(parts, "file_name")
    if "file_name" in wanted and name is not None:
        if not name:
            raise bad("file_name must not be empty", "file_name")
        rename(call.db, file_id, name)
    call.store.touch("FileBox", file_id, to_datetime(call.now))
    return json_answer(200, _metadata(call, _row(call, file_id)))


def replace_content(db: Database, file_id: int, data: bytes) -> None:
    """New bytes for a file (shared with legacy ``FileService.replaceFile``)."""
    db.files[file_id] = data
    db.tables["FileBox"][file_id]["FileSize"] = len(data)


def rename(db: Database, file_id: int, name: str) -> None:
    """A new name, and so extension (shared with legacy ``FileService.renameFile``)."""
    row = db.tables["FileBox"][file_id]
    row["FileName"] = name
    row["Extension"] = name.rpartition(".")[2] if "." in name else ""


def delete(call: Call) -> Answer:
    file_id = row_id(_row(call, call.path_id("file_id", "file")))
    del call.db.tables["FileBox"][file_id]
    call.db.files.pop(file_id, None)
    return no_content()


def data(call: Call) -> Answer:
    row = _row(call, call.path_id("file_id", "file"))
    content = call.db.files.get(row_id(row), b"")
    disposition = f'attachment; filename="{row.get("FileName")!s}"'
    return Answer(200, content, "application/octet-stream", [("Content-Disposition", disposition)])


def parse_multipart(body: bytes, content_type: str) -> dict[str, Part]:
    """``multipart/form-data`` parts by name (last one wins); malformed bodies are a 400."""
    kind, params = _header_params(content_type)
    boundary = params.get("boundary")
    if kind.lower() != "multipart/form-data" or not boundary:
        raise bad("Expected a multipart/form-data body with a boundary", "file")
    delimiter = b"--" + boundary.encode("latin-1")
    position = body.find(delimiter)
    parts: dict[str, Part] = {}
    while position != -1:
        start = position + len(delimiter)
        if body.startswith(b"--", start):
            return parts
        head_end = body.find(b"\r\n\r\n", start)
        end = body.find(b"\r\n" + delimiter, head_end)
        if head_end == -1 or end == -1:
            break
        headers = body[start:head_end].decode("utf-8", "replace")
        disposition = next(
            (line for line in headers.splitlines() if line.lower().startswith("content-disp")),
            "",
        )
        _, fields = _header_params(disposition.partition(":")[2])
        if "name" in fields:
            parts[fields["name"]] = Part(body[head_end + 4 : end], fields.get("filename"))
        position = end + 2
    raise bad("Malformed multipart body", "file")


def _header_params(value: str) -> tuple[str, dict[str, str]]:
    kind, _, rest = value.partition(";")
    return kind.strip(), {k.lower(): v for k, v in _PARAM.findall(";" + rest)}


def _text(parts: dict[str, Part], name: str) -> str | None:
    part = parts.get(name)
    return None if part is None else part.data.decode("utf-8", "replace").strip()


def _metadata(call: Call, row: Row) -> dict[str, Any]:
    file_id = row_id(row)
    created, updated = call.store.times.get(("FileBox", file_id), (None, None))
    contact_id = row.get("ContactId")
    out = {
        "id": str(file_id),
        "file_name": row.get("FileName"),
        "file_size": row.get("FileSize"),
        "is_public": bool(row.get("Public")),
        "contact_id": None if contact_id is None else str(contact_id),
        "category": "DOCUMENTS",
        "file_box_type": "CONTACT" if contact_id is not None else "APPLICATION",
        "created_time": iso(created),
        "updated_time": iso(updated),
    }
    return {k: v for k, v in out.items() if v is not None}


def _row(call: Call, file_id: int) -> Row:
    row = call.db.tables["FileBox"].get(file_id)
    if row is None:
        raise missing("file", file_id)
    return row
