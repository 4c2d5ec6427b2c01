"""``shim actionset map/list/unmap`` and the store's action-set table (migration 6)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from shim.cli import cli


def test_map_list_unmap(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"SHIM_DB": str(tmp_path / "k.db"), "SHIM_SECRET_KEY": ""}

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result.output

    run("init")
    run("account", "add", "prod", "--service-key", "KeapAK-1")
    out = run("actionset", "map", "prod", "12", "--apply-tag", "100", "--remove-tag", "101",
              "--achieve-goal", "app:signup", "--add-note", "Hello")  # fmt: skip
    assert "Apply tag 100; Remove tag 101; Achieve goal app/signup; Add note 'Hello'" in out
    data = json.loads(run("actionset", "list", "prod", "--json"))
    assert data["12"][0] == {"op": "apply_tag", "tag": 100}
    run("actionset", "map", "prod", "12", "--apply-tag", "7")  # replaces
    assert run("actionset", "list", "prod").strip() == "12: Apply tag 7"
    assert "at least one step" in run("actionset", "map", "prod", "13", code=1)
    assert "INTEGRATION:CALL_NAME" in run("actionset", "map", "prod", "13", "--achieve-goal",
                                          "x", code=1)  # fmt: skip
    assert "no account" in run("actionset", "map", "nope", "1", "--apply-tag", "1", code=1)
    assert "unmapped" in run("actionset", "unmap", "prod", "12")
    assert "not mapped" in run("actionset", "unmap", "prod", "12", code=1)
