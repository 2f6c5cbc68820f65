"""The JSON a message or event payload may hold.

A payload is stored as JSON text and read back by several parsers: orjson on the
delivery path, the standard library through SQLAlchemy, pydantic when the API answers.
A payload is accepted only if all of them can read it, so nothing stored fails a later
read (a message that cannot be read would block its connector's delivery; an event
that cannot be served would break its connector's event list):

* at most ``MAX_DEPTH`` levels of objects and arrays: orjson and pydantic stop at 255,
  and an API answer wraps a payload in levels of its own;
* valid Unicode: Python's ``json`` reads ``"\\ud800"`` (an unpaired UTF-16 surrogate)
  into a string that cannot be encoded as UTF-8;
* for payloads Jackfield is asked to send: string keys (JSON's keys are text: written as
  text, ``1`` and ``"1"`` became one key and a value was lost);
* for payloads Jackfield is asked to send: finite numbers (JSON has no NaN) and
  integers within 64 bits (orjson's range, beyond which a read would round them).

``payload_json`` enforces all of this on what a caller sends (a clear refusal is better
than a changed message). Events arriving from outside are stored by ``json_text``
instead, which never refuses: it writes NaN as null and an unpaired surrogate as U+FFFD,
so what the external system sent is kept as closely as JSON allows.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

MAX_DEPTH = 64
TOO_DEEP = f"the payload nests objects and arrays deeper than {MAX_DEPTH} levels"
_NOT_UNICODE = "the payload holds text that is not valid Unicode (an unpaired surrogate)"

_OPTIONS = orjson.OPT_NON_STR_KEYS
# only for finding NaN: values and keys orjson writes but json cannot are let through
_nan_check = json.JSONEncoder(allow_nan=False, skipkeys=True, default=str).encode
_unicode_check = json.JSONEncoder(ensure_ascii=False).encode


class PayloadError(ValueError):
    """A payload Jackfield cannot store; the message says what is wrong with it."""


def payload_json(value: Any) -> str:
    """The JSON text of a payload to send; raises ``PayloadError`` when it holds what
    this module's docstring rules out. Costs one orjson dump (plus a C-speed check when
    the text has ``null``, which is what orjson writes for NaN, or many brackets)."""
    try:
        text = _dump_with_string_keys(value)
    except orjson.JSONEncodeError as exc:
        raise PayloadError(_explain(exc)) from None
    if b"null" in text:
        try:
            _nan_check(value)
        except ValueError:
            raise PayloadError(
                "the payload holds NaN or an infinity, which JSON cannot represent"
            ) from None
    check_depth(value, text)
    return text.decode()


def _dump_with_string_keys(value: Any) -> bytes:
    """orjson's text of ``value``, whose keys must be strings (instances of ``str``: a
    ``StrEnum`` member is written as its value); ``PayloadError`` names the first other
    key and where it is."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        if str(exc) != "Dict key must be str":
            raise
    found = _non_string_key(value)
    if found is not None:
        key, path = found
        kind = type(key).__name__
        raise PayloadError(
            f"the payload has a key that is not a string: {key!r} ({kind}) in {path}"
        )
    return orjson.dumps(value, option=_OPTIONS)  # keys of str subclasses only


def _non_string_key(value: Any) -> tuple[Any, str] | None:
    """The first key of ``value`` that is not a ``str`` and the path of its object
    (``payload['rows'][1]``), walking at most ``MAX_DEPTH`` levels (a cycle or a deeper
    payload is refused for its depth)."""
    level: list[tuple[Any, str]] = [(value, "payload")]
    for _ in range(MAX_DEPTH + 1):
        children: list[tuple[Any, str]] = []
        for item, path in level:
            entries = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in entries:
                if isinstance(item, dict) and not isinstance(key, str):
                    return key, path
                if isinstance(child, dict | list | tuple):
                    children.append((child, f"{path}[{key!r}]"))
        level = children
    return None


def check_depth(value: Any, text: bytes) -> None:
    """Raise ``PayloadError`` if ``value`` (parsed from or dumped as ``text``) nests
    deeper than ``MAX_DEPTH``. Only payloads with that many brackets are walked."""
    if text.count(b"{") + text.count(b"[") > MAX_DEPTH:
        check_nesting(value)


def check_nesting(value: Any) -> None:
    """Raise ``PayloadError`` if ``value`` nests deeper than ``MAX_DEPTH`` (a walk over
    its objects and arrays, level by level: no recursion, whatever the depth)."""
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            raise PayloadError(TOO_DEEP)
        children: list[Any] = []
        for item in level:
            inner = item.values() if isinstance(item, dict) else item
            children.extend(c for c in inner if isinstance(c, dict | list | tuple))
        level = children


def check_unicode(value: Any) -> None:
    """Raise ``PayloadError`` if a string (or key) in ``value`` is not valid Unicode."""
    try:
        _unicode_check(value).encode()
    except UnicodeEncodeError:
        raise PayloadError(_NOT_UNICODE) from None


def _explain(exc: orjson.JSONEncodeError) -> str:
    reason = str(exc)
    if "surrogates" in reason:
        return _NOT_UNICODE
    if "64-bit" in reason:
        return "the payload holds an integer beyond 64 bits; send large numbers as strings"
    if "Recursion" in reason:
        return TOO_DEEP
    return f"the payload is not JSON: {reason}"


_fallback = json.JSONEncoder(separators=(",", ":"), default=str).encode


def json_text(value: Any) -> str:
    """JSON text of any value, never refused: what Jackfield stores of data it did not
    choose (events from webhooks, polling and subscriptions; delivery results) and what
    the event stream writes. Values JSON has no type for become their ``str``; see
    ``_storable``."""
    try:
        return orjson.dumps(value, default=str, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits: the slow way
        return _fallback(_storable(value))


def _storable(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (as orjson writes them: the
    standard library would write ``NaN``, which is not JSON and PostgreSQL refuses) and
    unpaired surrogates as U+FFFD (text that could be stored but never served)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value
