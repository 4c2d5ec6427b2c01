"""``shim scan``: legacy calls found in sample scripts of each client style (fixtures/scan)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from shim.cli import cli
from shim.rest import scan
from shim.rest.table import judge

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "scan"


def found(name: str) -> list[tuple[int, str, str | None, str]]:
    """(line, method, table, source) of each call; every judgement is the table's."""
    path = SAMPLES / name
    findings = scan.scan_text(path.read_text(), name)
    for f in findings:
        args = scan.ISDK_ARGS.get(f.source) if f.method == "DataService.getAppSetting" else None
        assert f.translation == judge(f.method, f.table, args), f
    return [(f.line, f.method, f.table, f.source) for f in findings]


def test_php_isdk_wrappers() -> None:
    assert found("isdk_membership.php") == [
        (6, "DataService.getAppSetting", None, "cfgCon"),
        (11, "ContactService.findByEmail", None, "findByEmail"),
        (15, "DataService.query", "ContactGroupAssign", "dsQuery"),
        (19, "APIEmailService.optIn", None, "addCon"),
        (19, "ContactService.add", None, "addCon"),
        (20, "ContactService.addToGroup", None, "grpAssign"),
        (21, "DataService.findByField", "Product", "dsFind"),
        (22, "DataService.query", None, "dsQuery"),
        (23, "InvoiceService.createBlankOrder", None, "blankOrder"),
        (24, "InvoiceService.addOrderItem", None, "addOrderItem"),
        (25, "InvoiceService.chargeInvoice", None, "chargeInvoice"),
        (26, "ContactService.runActionSequence", None, "runAS"),
    ]
    notes = {
        f.line: f.note
        for f in scan.scan_text((SAMPLES / "isdk_membership.php").read_text(), "x.php")
    }
    assert "Application" in notes[6] and notes[22] == "table not a literal"


def test_infusionsoft_php_services_skip_rest() -> None:
    assert found("sdk_forms.php") == [
        (6, "ContactService.addWithDupCheck", None,
         "contacts('xml')->addWithDupCheck"),
        (7, "DataService.add", "ContactAction", "data()->add"),
        (8, "DataService.query", "Contact", "data()->query"),
        (9, "APIEmailService.optIn", None, "emails('xml')->optIn"),
        (10, "FunnelService.achieveGoal", None, "funnels()->achieveGoal"),
    ]  # fmt: skip


def test_python_proxies_and_wrappers() -> None:
    assert found("xmlrpc_sync.py") == [
        (10, "DataService.query", "Contact", "DataService.query"),
        (12, "ContactService.addToGroup", None, "ContactService.addToGroup"),
        (13, "DataService.query", "Job", "DataService.query"),
        (16, "ContactService.add", None, "ContactService.add"),
        (17, "APIEmailService.optIn", None, "APIEmailService.optIn"),
        (22, "ContactService.update", None, "ContactService('update')"),
        (23, "DataService.findByField", "Referral", "DataService('findByField')"),
    ]
    assert found("helpers.py") == [
        (6, "ContactService.findByEmail", None, "find_by_email"),
        (7, "ContactService.addToGroup", None, "apply_tag"),
        (8, "DataService.add", "ContactAction", "add_note"),
        (9, "DataService.query", "Lead", "move_opportunity_stage"),
        (9, "DataService.update", "Lead", "move_opportunity_stage"),
    ]


def test_node_service_objects_and_raw_strings() -> None:
    assert found("sync.js") == [
        (6, "ContactService.findByEmail", None, "ContactService.findByEmail"),
        (7, "DataService.query", "Company", "DataService.query"),
        (11, "ContactService.load", None, "ContactService.load"),
        (12, "DataService.add", "ContactGroup", "DataService.add"),
    ]


def test_ruby_gem() -> None:
    assert scan.ruby_method("data_query") == "DataService.query"
    assert scan.ruby_method("contact_add_to_group") == "ContactService.addToGroup"
    assert scan.ruby_method("email_optin") == "APIEmailService.optIn"
    assert scan.ruby_method("unrelated") is None
    assert [(line, m, t) for line, m, t, _ in found("orders.rb")] == [
        (4, "ContactService.addWithDupCheck", None),
        (5, "ContactService.addToGroup", None),
        (6, "InvoiceService.createBlankOrder", None),
        (7, "InvoiceService.addManualPayment", None),
        (8, "DataService.query", "ContactGroup"),
        (9, "APIEmailService.optIn", None),
    ]


def test_catalog_calls_judge_as_translated() -> None:
    """ProductCategoryAssign, SocialAccount and saved searches translate (approximately);
    an in-place assignment update and quick searches do not."""
    php = (
        "<?php\n$app->dsAdd('ProductCategoryAssign', ['ProductCategoryId' => 3]);\n"
        "$app->dsUpdate('ProductCategoryAssign', 7, $d);\n"
        "$app->dsQuery('SocialAccount', 10, 0, ['ContactId' => $c], ['Id']);\n"
        '$app->dsAdd("SocialAccount", $data);\n'
        "$rows = $app->savedSearchAllFields(31, 1, $page);\n"
        "$app->getAvailableFields(31, 1);\n$app->quickSearch('Person', 1, 'x', 0, 10);\n"
    )
    assert [(f.method, f.table, f.translation) for f in scan.scan_text(php, "a.php")] == [
        ("DataService.add", "ProductCategoryAssign", "approximate"),
        ("DataService.update", "ProductCategoryAssign", "no"),
        ("DataService.query", "SocialAccount", "approximate"),
        ("DataService.add", "SocialAccount", "approximate"),
        ("SearchService.getSavedSearchResultsAllFields", None, "approximate"),
        ("SearchService.getAllReportColumns", None, "approximate"),
        ("SearchService.quickSearch", None, "no"),
    ]
    ruby = "Infusionsoft.search_get_saved_search_results(31, 1, 0)\n"
    assert [(f.method, f.translation) for f in scan.scan_text(ruby, "r.rb")] == [
        ("SearchService.getSavedSearchResultsAllFields", "approximate")
    ]


def test_edge_cases() -> None:
    # a table named after the key literal, a non-legacy dotted name, one line many calls
    text = 'x = s.DataService.query("KEY", "Product", 1, 0, {}, []); s.Other.query("Contact")\n'
    assert [(f.method, f.table) for f in scan.scan_text(text, "a.py")] == [
        ("DataService.query", "Product")
    ]
    raw = "call('DataService.load', [k, 'Lead', 1, []]); call('DataService.load', [k, t, 1])"
    assert [f.table for f in scan.scan_text(raw, "a.js")] == ["Lead", None]
    assert scan.scan_text("$x->query('Contact');", "a.php") == []  # not an iSDK name
    assert scan.language("A.PHP") == "php" and scan.language("README") is None
    by_table = "s.DataService.query(k, 'Contact')\ns.DataService.query(k, 'Ticket')\n"
    assert [f.translation for f in scan.scan_text(by_table, "a.py")] == ["approximate", "no"]


def test_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    (vendor / "isdk.php").write_text("<?php $this->methodCaller('DataService.query', $a);")
    (tmp_path / "a.py").write_text("s.ContactService.load(k, 1, ['Id'])\n")
    result = runner.invoke(cli, ["scan", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'a.py'}:1: ContactService.load: approximate" in result.output
    assert "isdk.php" not in result.output  # vendor/ skipped unless named
    result = runner.invoke(cli, ["scan", "--json", str(SAMPLES)], catch_exceptions=False)
    data = json.loads(result.output)
    assert data["summary"]["files"] == 6 and data["summary"]["calls"] == len(data["calls"])
    assert {"path", "line", "method", "table", "translation"} <= set(data["calls"][0])
    assert runner.invoke(cli, ["scan", str(tmp_path / "nope")]).exit_code != 0
