"""The declarative table specs: each one well-formed, documented, and read/written/filtered
the way its columns say (no REST request needed for any of these)."""

from __future__ import annotations

import datetime

import pytest

from shim.errors import NoTranslation
from shim.rest import criteria as crit
from shim.rest.spec import Column, TableSpec, check_spec, rest_only
from shim.rest.table import document
from shim.rest.tables import TABLES, specs
from shim.rest.tags import TAGS


@pytest.mark.parametrize("spec", specs(), ids=lambda s: s.table)
def test_every_spec_is_well_formed_and_documented(spec: TableSpec) -> None:
    assert check_spec(spec) == []
    assert f"\n## {spec.title or spec.table}\n" in document()
    for name in spec.columns:
        assert f"| {name} |" in document()


def test_registry_names_match() -> None:
    for name, table in TABLES.items():
        assert table.table == name


def _criterion(spec: TableSpec, name: str, value: object) -> crit.Criterion:
    return crit.compile_query(spec.table, spec.fields, {name: value})[0]  # type: ignore[dict-item]


def test_filters_follow_the_columns() -> None:
    assert TAGS.filter(_criterion(TAGS, "Id", 100)) is not None
    assert TAGS.filter(_criterion(TAGS, "Id", "~>~100")) is None  # tag_ids takes == only
    f = TAGS.filter(_criterion(TAGS, "GroupCategoryId", "~null~"))
    assert f is not None and f.clause == "category_id==NONE" and f.exact
    f = TAGS.filter(_criterion(TAGS, "GroupName", "News"))
    assert f is not None and f.clause == "name==News"
    assert TAGS.filter(_criterion(TAGS, "GroupName", "News%")) is None  # no wildcard on tags
    assert TAGS.filter(_criterion(TAGS, "GroupName", "a;b")) is None  # not expressible
    assert TAGS.filter(_criterion(TAGS, "GroupName", "~null~")) is None


def test_a_wildcard_and_comparison_spec() -> None:
    spec = TableSpec(
        "Sample",
        "/samples",
        "samples",
        {
            "Id": rest_only("int", "id", filter="id", compare=True),
            "Name": Column("str", "name", filter="name", wildcard=True),
            "When": Column("date", "when_time"),
            "Owner": Column("int", "owner_id", text_id=True),
            "Secret": Column("str", None),
        },
    )
    assert check_spec(spec) == []
    f = spec.filter(_criterion(spec, "Id", "~>=~5"))
    assert f is not None and f.clause == "id>=5"
    f = spec.filter(_criterion(spec, "Name", "Ab%"))
    assert f is not None and f.clause == "name==Ab*"
    assert spec.filter(_criterion(spec, "Name", "%b")) is None
    row = spec.row({"id": "7", "name": "x", "when_time": "2026-01-02T03:04:05Z", "owner_id": "9"})
    assert row == {
        "Id": 7,
        "Name": "x",
        "When": datetime.datetime(2026, 1, 2, 3, 4, 5),
        "Owner": 9,
        "Secret": None,
    }
    assert spec.body({"Owner": 9, "When": datetime.datetime(2026, 1, 2)}) == {
        "owner_id": "9",
        "when_time": "2026-01-02T00:00:00.000Z",
    }
    with pytest.raises(NoTranslation, match=r"Sample\.Secret"):
        spec.body({"Secret": "x"})


def test_reference_bodies() -> None:
    assert TAGS.body({"GroupCategoryId": 10, "GroupName": "n"}) == {
        "category": {"id": "10"},
        "name": "n",
    }
    assert TAGS.body({"GroupCategoryId": None}) == {"category": None}
    assert TAGS.row({"id": "5", "category": {"id": "10"}})["GroupCategoryId"] == 10


def test_spec_problems_are_found() -> None:
    bad = TableSpec("Bad", "/bad", "bad", {"Name": Column("str", None, filter="name")})
    problems = check_spec(bad)
    assert any("no int Id" in p for p in problems)
    assert any("filter without a REST property" in p for p in problems)
