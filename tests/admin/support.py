"""Shared by the admin page's tests: a keyshim with the admin page on, and a password."""

from __future__ import annotations

import re

import httpx

from shim.serve.admin import passwords
from shim.store.protocol import Store

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def set_password(store: Store, password: str = PASSWORD) -> None:
    # Cheap scrypt parameters: the tests are about the page, not the hash's cost.
    store.set_admin_password(passwords.hash_password(password, n=2**10))


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found, page
    return found.group(1)


async def log_in(client: httpx.AsyncClient, password: str = PASSWORD) -> httpx.Response:
    page = await client.get("/admin/login")
    return await client.post(
        "/admin/login", data={"csrf": csrf_of(page.text), "password": password}
    )
