"""Equivalence (route ``xmlrpc`` vs route ``rest``, identical answers and XML-RPC types) for
the CRM translations: settings, the CRM tables, custom fields, email, files, forms; and the
faults of what has no translation. Each case states the expected type or fault."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from shim.rest.settings import APP_SETTINGS
from shim.settings import Settings
from shim.store.sqlite import SqliteStore
from tests.support.rest_pair import Pair

pytestmark = pytest.mark.anyio


@pytest.fixture
async def pair(settings: Settings, store: SqliteStore) -> AsyncIterator[Pair]:
    p = Pair(replace(settings), store, {})
    await p.app.startup()
    yield p
    await p.aclose()


async def _fault(pair: Pair, method: str, *params: object) -> tuple[int, str]:
    answer = await pair.call("rest", method, *params)  # type: ignore[arg-type]
    assert answer[0] == "fault", answer
    return answer[1], answer[2]


# --- item: connection tests and settings ------------------------------------------------


async def test_every_mapped_setting_is_a_string(pair: Pair) -> None:
    for module, setting in APP_SETTINGS:
        for spelled in (module, module.capitalize()):
            value = await pair.same("DataService.getAppSetting", spelled, setting)
            assert isinstance(value, str) and value, (module, setting)
    # the PHP iSDK's cfgCon() connection test
    assert await pair.same("DataService.getAppSetting", "Application", "enabled") == "yes"
    assert await pair.same("DataService.getAppSetting", "Order", "defaultmaxretry") == "3"


async def test_an_unmapped_setting_fault_names_it(pair: Pair) -> None:
    code, text = await _fault(pair, "DataService.getAppSetting", "Order", "nosuchsetting")
    assert code == 112 and text.startswith("[NoRestTranslation]")
    assert "Order.nosuchsetting" in text


async def test_an_untranslated_table_fault_names_the_table(pair: Pair) -> None:
    code, text = await _fault(pair, "DataService.query", "Ticket", 10, 0, {}, ["Id"])
    assert code == 112 and "DataService.query on table Ticket" in text
    code, text = await _fault(pair, "DataService.count", "Ticket", {})
    assert code == 112 and "on table Ticket" in text
    # a name the legacy API never had: its own fault, through either route
    fault = await pair.same("DataService.query", "NoSuchTable", 10, 0, {}, ["Id"])
    assert fault[:2] == ("fault", 9)
