"""The codec's builder runs as expat's own handlers (no ElementTree wrappers in between):
what ElementTree used to do for it, it must still do itself."""

from __future__ import annotations

import pytest

from shim.errors import ParseError
from shim.xmlrpc import parse_call


def test_namespaced_names_are_spelled_as_elementtree_spells_them() -> None:
    body = b'<methodCall xmlns="urn:x"><methodName>A.b</methodName></methodCall>'
    with pytest.raises(ParseError, match=r"unknown element <\{urn:x\}methodCall>"):
        parse_call(body)
    body = b'<methodCall><methodName>A.b</methodName><p:params xmlns:p="urn:p"/></methodCall>'
    with pytest.raises(ParseError, match=r"unknown element <\{urn:p\}params>"):
        parse_call(body)


def test_attributes_are_ignored() -> None:
    body = (
        b'<methodCall a="1"><methodName b="2">A.b</methodName><params c="3"><param d="4">'
        b'<value e="5"><string f="6">k</string></value></param></params></methodCall>'
    )
    call = parse_call(body)
    assert (call.method, call.params, call.first_param_text) == ("A.b", ["k"], "k")
