"""The XML-RPC codec: parse a legacy methodCall, find and swap its key, build answers.

Why it is shaped like this:

* **Pure.** No I/O and no clock, so every odd thing a legacy client sends is a unit test. It
  is the only module that imports defusedxml; DTDs, entities and external references are
  refused before anything else looks at a body.
* **The hot path.** Every call is parsed once. The key is not re-serialized: ``parse_call``
  records the byte range of the first parameter's text in the original body and
  ``replace_first_param`` is two slices and a join. Everything else reaches Keap byte for byte
  as the script sent it (its formatting, its encoding, its 10 MB of base64).
* **Never forward a wrong splice.** The byte range comes from a small scanner that is
  independent of the XML parser. ``parse_call`` decodes the range itself and insists that it
  equals the parsed first parameter; if it does not, the request is a ``ParseError``. A wrong
  splice could leak the local key to Keap or corrupt another parameter.

Empty self-closing first parameters (``<value/>``, ``<string/>``) parse as ``""`` but have no
span (``first_param_span is None``): there is no text to replace and an empty key is never
valid, so ``replace_first_param`` refuses them with ``InvalidParameter``.
"""

from __future__ import annotations

import base64
import codecs
import datetime
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn, TypeAlias
from xml.etree import ElementTree

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from shim.errors import InvalidParameter, ParseError

_Element: TypeAlias = ElementTree.Element

Value: TypeAlias = (
    int | bool | float | str | bytes | datetime.datetime | dict[str, "Value"] | list["Value"] | None
)


@dataclass(frozen=True, slots=True)
class Call:
    """A parsed methodCall and where its first parameter's text sits in the original body."""

    method: str
    params: list[Value]
    first_param_span: tuple[int, int] | None

    @property
    def first_param_text(self) -> str | None:
        """The first parameter if it is a string (the legacy API key), else None."""
        first = self.params[0] if self.params else None
        return first if isinstance(first, str) else None


@dataclass(frozen=True, slots=True)
class Limits:
    max_depth: int = 32  # nesting depth of struct/array
    max_params: int = 64
    max_members: int = 100_000  # total <value> elements in the whole document


DEFAULT_LIMITS = Limits()


class Fault(Exception):
    """A fault received in a methodResponse."""

    code: int
    string: str

    def __init__(self, code: int, string: str) -> None:
        super().__init__(code, string)
        self.code = code
        self.string = string

    def __str__(self) -> str:
        return f"<Fault {self.code}: {self.string!r}>"


_METHOD_NAME = re.compile(r"[A-Za-z0-9_]{1,64}\.[A-Za-z0-9_]{1,64}")


def is_method_name(name: str) -> bool:
    """Legacy method names are ``Service.method``: letters, digits, underscore, one dot."""
    return _METHOD_NAME.fullmatch(name) is not None


# --- parsing: defusedxml guards expat, which feeds ElementTree's C tree builder ---

_SCALARS = frozenset(
    ("string", "i4", "int", "i8", "boolean", "double", "nil", "dateTime.iso8601", "base64")
)
_KNOWN = _SCALARS | {
    "methodCall", "methodResponse", "methodName", "params", "param", "value",
    "struct", "member", "name", "array", "data", "fault",
}  # fmt: skip
_WS = " \t\r\n"  # XML's whitespace
_ENCODINGS = frozenset({"utf-8", "iso8859-1", "ascii", "cp1252"})  # all ASCII-compatible
_XML_DECL = re.compile(
    rb"(?:\xef\xbb\xbf)?<\?xml\s[^>]*?\bencoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']"
)
_INT = re.compile(r"[+-]?[0-9]{1,40}")
_FLOAT = re.compile(
    r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|nan)", re.I
)
#: Longest scalar text matched by a regex: nothing legitimate is longer, and the bound keeps a
#: hostile megabyte of digits from costing seconds of backtracking on the event loop.
_MAX_SCALAR = 400
_DATETIME = re.compile(
    r"([0-9]{4})-?([0-9]{2})-?([0-9]{2})T([0-9]{2}):?([0-9]{2}):?([0-9]{2})"
    r"(?:[.,]([0-9]{1,6})[0-9]*)?(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?"
)


#: Bodies up to this size are parsed with expat feeding ElementTree's C tree builder directly
#: (no Python call per element) and the limits are checked while the tree is read; such a
#: tree is too small to matter. Larger bodies go through ``_Counter``, which counts as expat
#: goes and stops a bomb at the first element past a limit, before it is built.
FAST_PARSE_MAX = 64 * 1024


class _Counter:
    """Expat handlers for large bodies: enforce the limits element by element, then hand the
    element to the C tree builder.

    ``start`` gets expat's raw names: a namespaced one arrives as ``uri}local`` and is spelled
    ``{uri}local`` here, as ElementTree would.
    """

    def __init__(self, limits: Limits, tree: ElementTree.TreeBuilder) -> None:
        self.limits = limits
        self.tree = tree
        self.depth = self.values = self.params = 0

    def start(self, tag: str, attrib: object) -> None:
        if tag not in _KNOWN:
            raise ParseError(f"unknown element <{_spelled(tag)}>")
        if tag == "value":
            self.values += 1
            if self.values > self.limits.max_members:
                raise ParseError(f"more than {self.limits.max_members} values")
        elif tag in ("struct", "array"):
            self.depth += 1
            if self.depth > self.limits.max_depth:
                raise ParseError(f"structs/arrays nested deeper than {self.limits.max_depth}")
        elif tag == "param":
            self.params += 1
            if self.params > self.limits.max_params:
                raise ParseError(f"more than {self.limits.max_params} params")
        self.tree.start(tag, {})

    def end(self, tag: str) -> None:
        self.tree.end(tag)
        if tag in ("struct", "array"):
            self.depth -= 1


def _spelled(tag: str) -> str:
    return "{" + tag if "}" in tag and not tag.startswith("{") else tag


def _encoding(body: bytes) -> str:
    """The body's declared encoding; only ASCII-compatible ones (the span scanner reads bytes)."""
    if body[:2] in (b"\xfe\xff", b"\xff\xfe") or 0 in body[:4]:
        raise ParseError("unsupported encoding (UTF-16/UTF-32)")
    match = _XML_DECL.match(body)
    if match is None:
        return "utf-8"
    declared = match[1].decode("ascii")
    try:
        name = codecs.lookup(declared).name
    except (LookupError, ValueError):
        raise ParseError(f"unknown encoding {declared!r}") from None
    if name not in _ENCODINGS:
        raise ParseError(f"unsupported encoding {declared!r}")
    return name


def _parse(body: bytes, limits: Limits, root_tag: str) -> tuple[_Element, str]:
    """The tree of ``body``, whose root must be ``<root_tag>``, and the body's encoding."""
    encoding = _encoding(body)
    tree = ElementTree.TreeBuilder()
    parser = DefusedXMLParser(
        target=tree, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    # ElementTree's Python wrappers per element (name fixing, an attribute dict) cost more than
    # the whole expat parse, so expat calls the tree builder's C methods itself (or the
    # counting ``_Counter`` for large bodies). defusedxml's DTD, entity and external-reference
    # handlers, and the default handler, stay as set.
    expat = parser.parser
    expat.ordered_attributes = False  # attributes arrive as the dict the tree builder takes
    if len(body) <= FAST_PARSE_MAX:
        expat.StartElementHandler = tree.start
        expat.EndElementHandler = tree.end
    else:
        counter = _Counter(limits, tree)
        expat.StartElementHandler = counter.start
        expat.EndElementHandler = counter.end
    expat.CharacterDataHandler = tree.data
    try:
        parser.feed(body)
        root = parser.close()  # the tree builder's root element
    except ParseError:
        raise
    except DefusedXmlException as exc:
        raise ParseError(f"DTDs and entities are not allowed ({type(exc).__name__})") from None
    except (SyntaxError, ValueError, LookupError) as exc:  # expat's errors, bad encodings
        raise ParseError(str(exc) or "malformed XML") from None
    if root.tag != root_tag:
        if root.tag not in _KNOWN:
            raise ParseError(f"unknown element <{_spelled(root.tag)}>")
        raise ParseError(f"root element is <{root.tag}>, expected <{root_tag}>")
    return root, encoding


class _Walk:
    """Reads a parsed tree into values, checking the shape and the limits as it goes.

    Every element is visited once, so the limits hold for small bodies too (whose tree was
    built without counting); recursion only follows struct/array nesting, which is bounded by
    ``max_depth`` before it recurses.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.values = 0
        self.depth = 0

    def children(self, node: _Element, *allowed: str) -> list[_Element]:
        """The child elements of a container, which may hold nothing but them and
        whitespace."""
        kids = list(node)
        text = node.text
        if text and text.strip(" \t\r\n"):
            raise ParseError(f"unexpected text in <{node.tag}>")
        for child in kids:
            tag = child.tag
            if tag not in allowed:
                if tag not in _KNOWN:
                    raise ParseError(f"unknown element <{_spelled(tag)}>")
                raise ParseError(f"unexpected <{tag}> in <{node.tag}>")
            tail = child.tail
            if tail and tail.strip(" \t\r\n"):
                raise ParseError(f"unexpected text in <{node.tag}>")
        return kids

    def single(self, node: _Element, tag: str) -> _Element:
        children = self.children(node, tag)
        if len(children) != 1:
            raise ParseError(f"<{node.tag}> must hold exactly one <{tag}>")
        return children[0]

    def value(self, node: _Element) -> Value:
        """One ``<value>``. The common shapes (a scalar, a struct of scalars) are read inline:
        this runs for every value of every call, so each helper call saved counts."""
        self.values += 1
        if self.values > self.limits.max_members:
            raise ParseError(f"more than {self.limits.max_members} values")
        if not len(node):
            return node.text or ""  # untyped <value>: a string, whitespace and all
        if len(node) != 1:
            self.single(node, node[0].tag)  # raises the precise complaint
        child = node[0]
        text, tail = node.text, child.tail
        if (text and text.strip(_WS)) or (tail and tail.strip(_WS)):
            raise ParseError("unexpected text in <value>")
        tag = child.tag
        if tag in _SCALARS:
            if len(child):
                inner = child[0].tag
                if inner not in _KNOWN:
                    raise ParseError(f"unknown element <{_spelled(inner)}>")
                raise ParseError(f"<{tag}> must not contain elements")
            text = child.text or ""
            return text if tag == "string" else _scalar(tag, text)
        if tag == "struct":
            return self.nested(child, self.struct)
        if tag == "array":
            return self.nested(child, self.array)
        if tag not in _KNOWN:
            raise ParseError(f"unknown element <{_spelled(tag)}>")
        raise ParseError(f"<{tag}> is not a value type")

    def nested(self, node: _Element, read: Callable[[_Element], Value]) -> Value:
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise ParseError(f"structs/arrays nested deeper than {self.limits.max_depth}")
        try:
            return read(node)
        finally:
            self.depth -= 1

    def struct(self, node: _Element) -> dict[str, Value]:
        result: dict[str, Value] = {}
        for member in self.children(node, "member"):
            if len(member) != 2:
                self._bad_member(member)
            name, value = member
            if name.tag == "value" and value.tag == "name":  # legal: the order is not fixed
                name, value = value, name
            elif name.tag != "name" or value.tag != "value":
                self._bad_member(member)
            text, tail, tail2 = member.text, name.tail, value.tail
            if (
                (text and text.strip(_WS))
                or (tail and tail.strip(_WS))
                or (tail2 and tail2.strip(_WS))
            ):
                raise ParseError("unexpected text in <member>")
            if len(name):
                raise ParseError("<name> must not contain elements")
            result[name.text or ""] = self.value(value)
        return result

    def _bad_member(self, member: _Element) -> NoReturn:
        """Raise what is wrong with a ``<member>`` that is not one ``<name>`` and one
        ``<value>``: an unknown or misplaced element, stray text, or a missing part."""
        self.children(member, "name", "value")
        raise ParseError("<member> must hold one <name> and one <value>")

    def array(self, node: _Element) -> list[Value]:
        data = self.children(node, "data")
        if len(data) > 1:
            raise ParseError("<array> must hold one <data>")
        return [self.value(value) for value in self.children(data[0], "value")] if data else []


def _scalar(tag: str, text: str) -> Value:
    if tag == "string":
        return text
    if tag == "base64":
        try:  # whitespace and line breaks are allowed, other junk is not
            return base64.b64decode(text.encode("ascii").translate(None, b" \t\r\n"), validate=True)
        except ValueError:
            raise ParseError("bad <base64> value") from None
    stripped = text.strip()
    if len(stripped) > _MAX_SCALAR:
        raise ParseError(f"<{tag}> value is {len(stripped)} characters long")
    if tag in ("i4", "int", "i8") and _INT.fullmatch(stripped):
        return int(stripped)
    if tag == "boolean" and stripped.lower() in ("0", "1", "false", "true"):
        return stripped.lower() in ("1", "true")
    if tag == "double" and _FLOAT.fullmatch(stripped):
        return float(stripped)
    if tag == "nil" and not stripped:
        return None
    if tag == "dateTime.iso8601" and (match := _DATETIME.fullmatch(stripped)):
        year, month, day, hour, minute, second = map(int, match.groups()[:6])
        micro = int((match[7] or "0").ljust(6, "0"))
        try:  # a trailing Z or offset is tolerated and dropped: Keap's times are naive
            return datetime.datetime(year, month, day, hour, minute, second, micro)
        except ValueError:
            pass
    raise ParseError(f"bad <{tag}> value {stripped[:40]!r}")


def parse_call(body: bytes, limits: Limits = DEFAULT_LIMITS) -> Call:
    """Parse a methodCall; raises ``ParseError`` saying what is wrong.

    Lenient where clients differ: untyped values, ``<boolean>true</boolean>``, dates with or
    without dashes (a Z or offset is dropped), ``<array/>``, attributes (ignored), methodName
    whitespace (stripped). Refused: DTDs, entities, unknown elements, stray text between
    elements, encodings that are not ASCII-compatible (UTF-16/32).
    """
    root, encoding = _parse(body, limits, "methodCall")
    walk = _Walk(limits)
    children = walk.children(root, "methodName", "params")
    names = [child for child in children if child.tag == "methodName"]
    params = [child for child in children if child.tag == "params"]
    if len(names) > 1 or len(params) > 1:
        raise ParseError("<methodCall> holds more than one <methodName> or <params>")
    if not names or len(names[0]) or not (method := (names[0].text or "").strip()):
        raise ParseError("missing methodName")
    values: list[Value] = []
    if params:
        param_nodes = walk.children(params[0], "param")
        if len(param_nodes) > limits.max_params:
            raise ParseError(f"more than {limits.max_params} params")
        values = [walk.value(walk.single(p, "value")) for p in param_nodes]
    return Call(method, values, _first_param_span(body, encoding, values))


def parse_response(body: bytes, limits: Limits = DEFAULT_LIMITS) -> Value:
    """Parse a methodResponse; raises ``Fault`` for a fault, ``ParseError`` for garbage."""
    root, _ = _parse(body, limits, "methodResponse")
    walk = _Walk(limits)
    children = walk.children(root, "params", "fault")
    if len(children) != 1:
        raise ParseError("<methodResponse> must hold one <params> or one <fault>")
    if children[0].tag == "params":
        return walk.value(walk.single(walk.single(children[0], "param"), "value"))
    fault = walk.value(walk.single(children[0], "value"))
    code = fault.get("faultCode") if isinstance(fault, dict) else None
    string = fault.get("faultString") if isinstance(fault, dict) else None
    if isinstance(code, str) and _INT.fullmatch(code.strip()):
        code = int(code)
    if not isinstance(code, int) or isinstance(code, bool) or not isinstance(string, str):
        raise ParseError("a <fault> needs an int faultCode and a string faultString")
    raise Fault(code, string)


# --- the span scanner: where the first param's text is, found in the bytes themselves ---

_MARKUP = rb"<!--.*?-->|<\?.*?\?>|<!\[CDATA\[(.*?)\]\]>"  # comment, PI, CDATA (1: content)
_NOT_TEXT = re.compile(_MARKUP, re.S)
_TOKEN = re.compile(  # markup, or a tag: 2 "/" if an end tag, 3 name, 4 "/" if an empty tag
    _MARKUP + rb"|<(/?)([^\s/>]+)(?:\s+[^\s=]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*\s*(/?)>", re.S
)
_REF = re.compile(r"&(?:#([0-9]+)|#x([0-9a-fA-F]+)|(amp|lt|gt|quot|apos));")
_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _next_tag(body: bytes, pos: int) -> re.Match[bytes]:
    """The next start, end or empty tag from ``pos``, skipping text, comments, PIs and CDATA.

    The body is already known to be well-formed, so every ``<`` starts one of these.
    """
    for match in _TOKEN.finditer(body, pos):
        if match[2] is not None:
            return match
    raise ValueError("no tag where one was expected")


def _locate_first_param(body: bytes) -> tuple[str, int, int]:
    """(kind, start, end): kind is "string" (text in start:end), "empty" or "other"."""
    tag = _next_tag(body, 0)
    while tag[2] or tag[3] != b"param":  # methodName holds text only: this is the first param
        tag = _next_tag(body, tag.end())
    tag = _next_tag(body, tag.end())
    if tag[2] or tag[3] != b"value":
        raise ValueError("no <value> in the first <param>")
    if tag[4]:
        return "empty", 0, 0
    start = tag.end()
    tag = _next_tag(body, start)
    if tag[2]:  # </value> right away: an untyped string
        return "string", start, tag.start()
    if tag[3] != b"string":
        return "other", 0, 0
    if tag[4]:
        return "empty", 0, 0
    start = tag.end()
    tag = _next_tag(body, start)
    if not tag[2]:
        raise ValueError("<string> holds an element")
    return "string", start, tag.start()


def _decode_span(body: bytes, start: int, end: int, encoding: str) -> str:
    """What the parser makes of ``body[start:end]``, which must hold no tag and cut no markup:
    line ends normalized first, comments and PIs dropped, CDATA literal, references resolved."""
    raw = body[start:end]
    if b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if b"<" in raw:  # one pass into one buffer: a flood of comments costs time, not memory
        out, pos = bytearray(), 0
        for match in _NOT_TEXT.finditer(raw):
            out += raw[pos : match.start()]
            if match[1]:  # CDATA content, escaped into plain text
                out += match[1].replace(b"&", b"&amp;").replace(b"<", b"&lt;")
            pos = match.end()
        out += raw[pos:]
        if b"<" in out:
            raise ValueError("markup where the first parameter's text should be")
        raw = bytes(out)
    text = raw.decode(encoding)
    return _REF.sub(_reference, text) if "&" in text else text


def _reference(match: re.Match[str]) -> str:
    if match[3]:
        return _NAMED[match[3]]
    return chr(int(match[1], 10) if match[1] else int(match[2], 16))


def _first_param_span(body: bytes, encoding: str, params: list[Value]) -> tuple[int, int] | None:
    """Scan for the first param's text and check it against what the parser decoded."""
    if not params:
        return None
    first = params[0]
    try:
        kind, start, end = _locate_first_param(body)
        text = _decode_span(body, start, end, encoding) if kind == "string" else None
    except (ValueError, OverflowError):
        raise ParseError("could not locate the first parameter") from None
    if kind == "string" and isinstance(first, str) and text == first:
        return start, end
    if (kind == "empty" and first == "") or (kind == "other" and not isinstance(first, str)):
        return None
    raise ParseError("the first parameter could not be located exactly")


def replace_first_param(body: bytes, call: Call, placeholder: str) -> bytes:
    """``body`` with only the first param's text replaced by the XML-escaped ``placeholder``.

    ``call`` must come from ``parse_call(body)``. The placeholder is written in ASCII with
    character references, which is right for every encoding ``parse_call`` accepts.
    """
    if call.first_param_span is None:
        raise InvalidParameter("The first parameter must be the API key (a non-empty string)")
    start, end = call.first_param_span
    text = _escape(placeholder).encode("ascii", "xmlcharrefreplace")
    return b"".join((body[:start], text, body[end:]))


# --- writing ---

_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_INT32 = range(-(2**31), 2**31)
_INT64 = range(-(2**63), 2**63)


def _escape(text: str) -> str:
    """Escape for element content. A CR becomes ``&#13;`` so that it survives parsing; the
    characters XML 1.0 cannot carry at all (NUL and most C0 controls, lone surrogates,
    U+FFFE/U+FFFF) become U+FFFD, so the output is always well-formed."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if "\r" in text:
        text = text.replace("\r", "&#13;")
    if _NOT_XML_CHAR.search(text):
        text = _NOT_XML_CHAR.sub("\ufffd", text)
    return text


def _dump(value: Value, out: list[str]) -> None:
    if value is None:
        out.append("<value><nil/></value>")
    elif isinstance(value, bool):  # before int: bool is an int
        out.append(f"<value><boolean>{int(value)}</boolean></value>")
    elif isinstance(value, int):
        if value not in _INT64:
            raise OverflowError(f"int {value} does not fit in XML-RPC's <i8>")
        tag = "i4" if value in _INT32 else "i8"
        out.append(f"<value><{tag}>{value}</{tag}></value>")
    elif isinstance(value, float):
        out.append(f"<value><double>{value!r}</double></value>")
    elif isinstance(value, str):
        out += ("<value><string>", _escape(value), "</string></value>")
    elif isinstance(value, (bytes, bytearray)):
        out += ("<value><base64>", base64.b64encode(value).decode("ascii"), "</base64></value>")
    elif isinstance(value, datetime.datetime):
        v = value  # strftime("%Y") does not zero-pad years before 1000
        iso = f"{v.year:04d}{v.month:02d}{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
        out.append(f"<value><dateTime.iso8601>{iso}</dateTime.iso8601></value>")
    elif isinstance(value, dict):
        out.append("<value><struct>")
        for name, member in value.items():
            if not isinstance(name, str):
                raise TypeError(f"struct member names must be str, not {type(name).__name__}")
            out += ("<member><name>", _escape(name), "</name>")
            _dump(member, out)
            out.append("</member>")
        out.append("</struct></value>")
    elif isinstance(value, (list, tuple)):
        out.append("<value><array><data>")
        for item in value:
            _dump(item, out)
        out.append("</data></array></value>")
    else:
        raise TypeError(f"cannot marshal {type(value).__name__} as XML-RPC")


def _document(head: str, params: Sequence[Value], tail: str) -> bytes:
    out = ['<?xml version="1.0"?>\n', head]
    for param in params:
        out.append("<param>")
        _dump(param, out)
        out.append("</param>")
    out += (tail, "\n")
    return "".join(out).encode("utf-8")


def dumps_call(method: str, params: Sequence[Value]) -> bytes:
    head = f"<methodCall><methodName>{_escape(method)}</methodName><params>"
    return _document(head, params, "</params></methodCall>")


def dumps_response(value: Value) -> bytes:
    return _document("<methodResponse><params>", [value], "</params></methodResponse>")


def dumps_fault(code: int, message: str) -> bytes:
    out = ['<?xml version="1.0"?>\n<methodResponse><fault>']
    _dump({"faultCode": code, "faultString": message}, out)
    out.append("</fault></methodResponse>\n")
    return "".join(out).encode("utf-8")
