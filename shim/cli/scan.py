"""``shim scan PATH...``: the legacy XML-RPC calls in script sources (the shell around the pure
scanner in ``shim/rest/scan.py``: it only finds and reads files)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import click

from shim.errors import CliError

#: Directories not walked unless named: third-party code (the iSDK itself names every method).
SKIP_DIRS = frozenset(
    {".git", ".hg", ".svn", "node_modules", "vendor", "__pycache__", ".venv", "venv"}
    | {"site-packages", ".tox", "dist", "build"}
)
MAX_FILE = 2 * 1024 * 1024


def source_files(paths: tuple[str, ...]) -> Iterator[Path]:
    """Files to scan: those named, and those under the directories named (sorted)."""
    from shim.rest.scan import language

    for name in paths:
        path = Path(name)
        if path.is_file():
            yield path
        elif path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
                for file in sorted(files):
                    if language(file) is not None:
                        yield Path(root) / file
        else:
            raise CliError(f"no such file or directory: {name}")


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def scan(paths: tuple[str, ...], as_json: bool) -> None:
    """Find legacy XML-RPC calls in PHP, Python, JavaScript and Ruby sources.

    Lists each call with its file and line, its DataService table where the source names it
    as a literal, and whether keyshim answers it through REST v2 (exact, approximate, no).
    Knows the PHP iSDK's wrappers (dsQuery, grpAssign, cfgCon...), infusionsoft-php's XML-RPC
    services, Python/Node service objects, the Ruby gem, and raw 'Service.method' strings.
    Directories such as vendor/ and node_modules/ are skipped unless named.

    \b
    Examples:
      shim scan wp-content/plugins/my-plugin
      shim scan --json sync.py > calls.json
    """
    from shim.rest import scan as scanner

    findings: list[scanner.Finding] = []
    skipped = []
    for path in source_files(paths):
        if path.stat().st_size > MAX_FILE:
            skipped.append(str(path))
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        findings += scanner.scan_text(text, str(path), scanner.language(path.name) or "")
    if as_json:
        data = {
            "calls": [f.as_dict() for f in findings],
            "summary": scanner.summary(findings),
            "skipped": skipped,
        }
        click.echo(json.dumps(data, indent=2))
        return
    for line in scanner.lines(findings):
        click.echo(line)
    for name in skipped:
        click.echo(f"skipped (over {MAX_FILE // (1024 * 1024)} MiB): {name}")


def survey_report(directory: str, as_json: bool) -> None:
    """``shim readiness --survey DIR``: the apps-covered share of a usage survey's data
    (methods.csv, tables.csv, survey.csv; fixtures/legacy_usage holds the project's)."""
    from shim.rest import survey

    folder = Path(directory)
    try:
        methods = (folder / "methods.csv").read_text(encoding="utf-8")
        tables = (folder / "tables.csv").read_text(encoding="utf-8")
        totals = (folder / "survey.csv").read_text(encoding="utf-8").splitlines()
        apps = int(dict(zip(totals[0].split(","), totals[1].split(","), strict=True))["apps"])
    except (OSError, IndexError, KeyError, ValueError) as exc:
        raise CliError(f"cannot read the survey in {directory}: {exc}") from exc
    data = survey.coverage(methods, tables, apps)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for line in survey.lines(data):
        click.echo(line)


COMMANDS = [scan]
