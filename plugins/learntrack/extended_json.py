"""MongoDB Extended JSON for bronze's ``raw`` column, at the speed of the C ``json`` module.

Bronze stores each document as Relaxed Extended JSON text, written by extraction and parsed again
by silver and its gate, once per row. ``bson.json_util`` walks every value in Python (and parses
each date with ``strptime``), which made it the largest client-side cost of both (issue 10). These
two functions give exactly ``json_util``'s output for the shapes activity and profile documents
have (strings, numbers, booleans, nulls, UTC dates from 1970 on, ObjectIds, nested objects and
arrays) through the C encoder and decoder, and hand anything else to ``json_util`` itself, so the
text and values are identical whatever the input (``tests/plugins/learntrack/test_extended_json.py``
compares both on generated and hostile documents).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from bson import ObjectId, json_util

UTC = dt.timezone.utc
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_ZERO = dt.timedelta(0)
#: The dates ``dumps_relaxed`` writes; for these ``fromisoformat`` equals json_util's own arithmetic.
_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z\Z")
_HEX24 = re.compile(r"[0-9a-f]{24}\Z")
#: The keys that make json_util read an object as a BSON type ("$date", "$oid", "$numberLong", ...).
_WRAPPER_KEYS = frozenset(json_util._PARSERS_SET)


class _NotPlain(Exception):
    """A value the fast encoder leaves to ``json_util``."""


def _relaxed_value(value: Any) -> Any:
    kind = type(value)
    if kind is dt.datetime and (value.tzinfo is UTC or value.utcoffset() == _ZERO) and value >= _EPOCH:
        ms = value.microsecond // 1000
        text = (f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
                f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}")
        return {"$date": f"{text}.{ms:03d}Z" if ms else f"{text}Z"}
    if kind is ObjectId:
        return {"$oid": str(value)}
    raise _NotPlain


_ENCODER = json.JSONEncoder(default=_relaxed_value, allow_nan=False, check_circular=False)


def dumps_relaxed(doc: Any) -> str:
    """``json_util.dumps(doc, json_options=RELAXED_JSON_OPTIONS)``, the same text, faster."""
    try:
        return _ENCODER.encode(doc)
    except (_NotPlain, ValueError, TypeError):  # NaN/Infinity, an old date, a BSON type: json_util's way
        return json_util.dumps(doc, json_options=json_util.RELAXED_JSON_OPTIONS)


def utc_json_options():
    """Options that decode dates as aware UTC datetimes and out-of-range dates as ``DatetimeMS``."""
    from bson.codec_options import DatetimeConversion
    from bson.json_util import JSONOptions

    return JSONOptions(tz_aware=True, tzinfo=UTC, datetime_conversion=DatetimeConversion.DATETIME_AUTO)


_OPTIONS = utc_json_options()


def _object(obj: dict) -> Any:
    if _WRAPPER_KEYS.isdisjoint(obj):  # a plain object: nothing to convert
        return obj
    if len(obj) == 1:
        value = next(iter(obj.values()))
        if "$date" in obj:
            if type(value) is str and _ISO_UTC.match(value):
                try:
                    return dt.datetime.fromisoformat(value)
                except ValueError:
                    pass  # e.g. month 13: json_util raises its own error
        elif "$oid" in obj and type(value) is str and _HEX24.match(value):
            return ObjectId(value)
    return json_util.object_hook(obj, _OPTIONS)


#: One decoder for every call: ``json.loads(text, object_hook=...)`` builds a new one each time (5% of
#: silver's judging).
_DECODER = json.JSONDecoder(object_hook=_object)


def loads_utc(text: str | bytes) -> Any:
    """``json_util.loads(text, json_options=utc_json_options())``, the same values, faster."""
    if type(text) is str:
        return _DECODER.decode(text)
    return json.loads(text, object_hook=_object)  # bytes: json.loads detects their encoding
