"""The apps-covered share of the legacy usage survey (fixtures/legacy_usage), per the
translation table. The pinned figures are today's: when a translation lands they move, and
this test is updated with them (that is the point: it shows what a translation was worth)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from shim.cli import cli
from shim.rest import survey
from shim.rest.spec import TableSpec
from shim.rest.table import no_equivalent
from shim.rest.tables import TABLES

DATA = Path(__file__).resolve().parents[2] / "fixtures" / "legacy_usage"


def _coverage() -> dict[str, object]:
    methods = (DATA / "methods.csv").read_text()
    tables = (DATA / "tables.csv").read_text()
    return survey.coverage(methods, tables, 74)


def test_todays_share() -> None:
    data = _coverage()
    figures = {k: v for k, v in data.items() if k != "untranslated"}
    assert figures == {
        "apps": 74,
        "covered_low": 0.8514,
        "covered_high": 0.973,
        "covered_independent": 0.8604,
        "call_sites_translated": 0.9906,
        "call_sites_judged": 1388,
    }
    names = [i["name"] for i in data["untranslated"]]  # type: ignore[attr-defined]
    assert len(names) == 7
    assert names[:3] == [
        "DataService.authenticateUser",
        "DataService.add on CreditCard",
        "DataService.getTemporaryKey",
    ]
    assert "DataService.* on Contact" not in names and "ContactService.add" not in names
    for translated in ("on OrderItem", "on RecurringOrder", "on CCharge", "DiscountService"):
        assert not any(translated in name for name in names), translated
    for translated in ("ProductCategoryAssign", "SocialAccount"):
        assert f"DataService.* on {translated}" not in names
    assert "SearchService.getSavedSearchResultsAllFields" not in names


def test_bounds_from_counts() -> None:
    methods = "method,apps,call_sites\nContactService.add,10,10\nX.y,4,5\nZ.w,3,3\n"
    tables = (
        "table,apps,call_sites,methods_seen\n"
        "Contact,5,9,query=9\nTicket,2,2,query=2\nContactGroup,6,7,query=5;add/update=2\n"
    )
    data = survey.coverage(methods, tables, 20)
    # untranslated: X.y (4 apps), Z.w (3), Ticket (2); ContactGroup's add/update translates
    assert (data["covered_low"], data["covered_high"]) == (0.55, 0.8)
    assert data["call_sites_translated"] == round(26 / 36, 4)
    partial = survey.coverage(
        "method,apps,call_sites\n",
        "table,apps,call_sites,methods_seen\nContactGroupAssign,4,5,query=3;add=2\n",
        10,
    )
    [item] = partial["untranslated"]
    assert (item["apps_low"], item["apps_high"]) == (1, 2)


def test_cli() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["readiness", "--survey", str(DATA)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "surveyed apps: 74" in result.output and "add on CreditCard" in result.output
    out = runner.invoke(cli, ["readiness", "--survey", str(DATA), "--json"]).output
    assert json.loads(out)["covered_high"] == 0.973
    assert runner.invoke(cli, ["readiness", "--survey", "/nonexistent"]).exit_code == 1


def test_what_is_left_has_no_rest_equivalent() -> None:
    """Every app whose calls have a REST v2 equivalent is covered: each item left is a method
    REST v2 cannot do at all, or a write on a table whose REST resource has no such write
    (cards are stored only through Keap's payment forms; referrals cannot be changed)."""
    names = [i["name"] for i in _coverage()["untranslated"]]  # type: ignore[attr-defined]
    methods = [n for n in names if " on " not in n]
    assert methods and all(no_equivalent(m) for m in methods), methods
    assert sorted(n for n in names if " on " in n) == [
        "DataService.add on CreditCard",
        "DataService.add/update on Referral",
    ]
    card, referral = TABLES["CreditCard"], TABLES["Referral"]
    assert isinstance(card, TableSpec) and isinstance(referral, TableSpec)
    assert "add" not in card.writes and "update" not in referral.writes
