"""HTML from Jinja2 templates: the only module that imports jinja2.

Autoescaping is on for every template, so a label or an error text from Keap cannot inject
markup. Times are shown in UTC (as the CLI prints them) with a relative form beside them.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jinja2

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def iso(ts: float | None) -> str:
    """UTC, minute precision: what a person compares with a log line."""
    if ts is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def span(seconds: float | None) -> str:
    """``3h 20m``, ``2d 4h``, ``45s``: a duration at a glance."""
    if seconds is None:
        return "-"
    s = abs(int(seconds))
    if s >= 86400:
        text = f"{s // 86400}d {s % 86400 // 3600}h"
    elif s >= 3600:
        text = f"{s // 3600}h {s % 3600 // 60}m"
    elif s >= 60:
        text = f"{s // 60}m {s % 60}s"
    else:
        text = f"{s}s"
    return text if seconds >= 0 else f"{text} ago"


def percent(share: float) -> str:
    return f"{share:.0%}"


_ENV.filters.update(iso=iso, span=span, percent=percent)


def page(name: str, **context: Any) -> bytes:
    """Render ``templates/NAME`` with ``context``."""
    return _ENV.get_template(name).render(**context).encode()
