"""The deployment files in the repository: what this machine can check of them.

``systemd-analyze verify`` on the unit, and a lint of the Dockerfile: known instructions, every
RUN command through ``shellcheck``, the exec-form JSON, the health check's Python, the files it
copies. No container is built here (no registry for base images in tests).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from shim.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "keyshim.service"
DOCKERFILE = ROOT / "Dockerfile"
INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{tool} is not installed (.ci/run installs it)")
        pytest.skip(f"{tool} is not installed")
    return path


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = need("systemd-analyze")
    text = UNIT.read_text()
    assert "ExecStart=/opt/keyshim/bin/shim serve" in text
    # verify insists the program exists: point it at this machine's keyshim for the check.
    local = tmp_path / "keyshim.service"
    local.write_text(text.replace("/opt/keyshim/bin/shim", f"{sys.executable} -m shim"))
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(local)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if "keyshim.service" in line or "Unknown" in line or "rror" in line
    ]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    out, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        word, _, rest = whole.partition(" ")
        out.append((word, rest.strip()))
    assert not pending, "a continuation runs off the end"
    return out


def test_dockerfile_instructions_and_files() -> None:
    steps = dockerfile()
    assert steps[0][0] == "FROM" and re.fullmatch(r"python:3\.\d+-slim-\w+", steps[0][1])
    for word, rest in steps:
        assert word in INSTRUCTIONS, word
        if word == "COPY":
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), source
    assert ("USER", "keyshim") in steps  # never runs as root
    cmd = dict(steps)["CMD"]
    assert json.loads(cmd) == ["shim", "serve"]


def test_dockerfile_run_commands_pass_shellcheck() -> None:
    shellcheck = need("shellcheck")
    runs = [rest for word, rest in dockerfile() if word == "RUN"]
    assert runs
    for command in runs:
        done = subprocess.run(
            [shellcheck, "--shell=sh", "-"], input=command, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}"


def test_dockerfile_health_check_compiles_and_accepts_503() -> None:
    check = dict(dockerfile())["HEALTHCHECK"]
    exec_form = json.loads(check[check.index("CMD") + 3 :].strip())
    assert exec_form[:2] == ["python", "-c"]
    compile(exec_form[2], "<healthcheck>", "exec")
    assert "/healthz" in exec_form[2] and "503" in exec_form[2]


def test_example_environment_names_real_settings() -> None:
    known = {"SHIM_" + f.name.upper() for f in fields(Settings)}
    names = [
        line.split("=", 1)[0]
        for line in (ROOT / "deploy" / "keyshim.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert {n for n in names if n.startswith("SHIM_")} <= known
    assert "SHIM_DB" in names and "PGPASSWORD" in names
