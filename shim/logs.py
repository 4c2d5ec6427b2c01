"""Structured logs: one JSON object a line, never a secret.

Call records travel as ``extra={"shim": {...}}`` so the formatter can emit them as fields.
Secrets never reach a log call in the first place (keys are logged by id, tokens not at all);
this module only shapes what it is given.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any


class JsonFormatter(logging.Formatter):
    #: The last second formatted (an access line per call would format the same one again).
    _second: tuple[int, str] = (-1, "")

    def _stamp(self, created: float) -> str:
        second = int(created)
        if self._second[0] != second:
            self._second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return self._second[1]

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self._stamp(record.created) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "shim", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def uvicorn_log_config(level: str) -> dict[str, Any]:
    """A dictConfig for uvicorn and keyshim loggers: JSON lines on stderr."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "shim.logs.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            "shim": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
        },
    }


def configure(level: str) -> None:
    """For CLI commands that are not servers."""
    import logging.config

    logging.config.dictConfig(uvicorn_log_config(level))
