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
* for payloads Jackfield is asked to send: finite numbers (JSON has no NaN) and
  integers within 64 bits (orjson's range, beyond which a read would round them).
"""

from __future__ import annotations

import json
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
        text = orjson.dumps(value, option=_OPTIONS)
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


def check_depth(value: Any, text: bytes) -> None:
    """Raise ``PayloadError`` if ``value`` (parsed from or dumped as ``text``) nests
    deeper than ``MAX_DEPTH``. Only payloads with that many brackets are walked."""
    if text.count(b"{") + text.count(b"[") <= MAX_DEPTH:
        return
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
