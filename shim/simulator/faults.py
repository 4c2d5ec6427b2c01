"""XML-RPC faults the simulated Keap sends, with Keap's codes and ``[Tag]`` texts.

Scripts match on the ``[Tag]`` prefix (and some on the code), so the simulator uses exactly the
codes listed in docs/keap.md#legacy-xml-rpc. Faults that happen before any handler runs
(unparseable body, unknown method) have code 0 and no tag, like the Apache XML-RPC server Keap
runs on.
"""

from __future__ import annotations

import datetime

from shim.xmlrpc import Value

#: Keap's legacy fault codes (docs/keap.md#legacy-xml-rpc).
CODES: dict[str, int] = {
    "InvalidConfig": 1,
    "InvalidKey": 2,
    "Unexpected": 3,
    "DatabaseError": 4,
    "RecordNotFound": 5,
    "LoadingError": 6,
    "NoTableAccess": 7,
    "NoFieldAccess": 8,
    "NoTableFound": 9,
    "NoFieldFound": 10,
    "NoFields": 11,
    "InvalidParameter": 12,
    "FailedLoginAttempt": 13,
    "NoAccess": 14,
    "FailedLoginAttemptPasswordExpired": 15,
}


class KeapFault(Exception):
    """A fault a handler raises; the endpoint turns it into an HTTP 200 XML-RPC fault."""

    def __init__(self, tag: str, message: str) -> None:
        super().__init__(message)
        self.code = CODES[tag] if tag else 0
        self.fault_string = f"[{tag}]{message}" if tag else message


def not_found() -> KeapFault:
    return KeapFault("RecordNotFound", "Record was not found")


def invalid(message: str) -> KeapFault:
    return KeapFault("InvalidParameter", message)


def no_such_handler(method: str) -> KeapFault:
    """Apache XML-RPC's answer for an unknown service or method: code 0, no tag."""
    return KeapFault("", f"No such handler: {method}")


_JAVA_TYPES: list[tuple[type, str]] = [
    (bool, "java.lang.Boolean"),
    (int, "java.lang.Integer"),
    (float, "java.lang.Double"),
    (str, "java.lang.String"),
    (bytes, "[B"),
    (datetime.datetime, "java.util.Date"),
    (dict, "java.util.HashMap"),
    (list, "[Ljava.lang.Object;"),
]


def no_matching_method(params: list[Value]) -> KeapFault:
    """Wrong argument count or types: Keap's Java dispatcher finds no overload that fits.

    The message names the Java types of what was sent, as the real dispatcher does, which is
    what a developer needs to see which argument was wrong.
    """
    names = []
    for value in params:
        name = "null"
        for py_type, java in _JAVA_TYPES:
            if isinstance(value, py_type):
                name = java
                break
        names.append(name)
    return invalid("No method matching arguments: " + ", ".join(names))
