"""The fast Extended JSON functions must give exactly json_util's text and values, whatever the input."""

import datetime as dt
import math
import random
import uuid

import pytest
from bson import Binary, Decimal128, Int64, ObjectId, Regex, Timestamp, decode, encode, json_util
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.datetime_ms import DatetimeMS

from learntrack.extended_json import dumps_relaxed, loads_utc, utc_json_options

UTC = dt.timezone.utc
AS_READ = CodecOptions(tz_aware=True, tzinfo=UTC, datetime_conversion=DatetimeConversion.DATETIME_AUTO)


def same(a, b) -> bool:
    """Equal values of the same types all the way down (1 == 1.0 == True would hide a difference)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dt.datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    return a == b


def assert_loads_like_json_util(text: str) -> None:
    """The same values as json_util, or the same kind of error."""
    try:
        expected = json_util.loads(text, json_options=utc_json_options())
    except Exception as exc:  # noqa: BLE001 - e.g. {"$oid0": ...} is not a wrapper json_util accepts
        with pytest.raises(type(exc)):
            loads_utc(text)
    else:
        assert same(loads_utc(text), expected)


def as_read(doc: dict) -> dict:
    """The document as pymongo hands it to extraction (a BSON round trip with extraction's options)."""
    return decode(encode(doc), AS_READ)


def generated_documents() -> list[dict]:
    from learntrack.generator import Generator, GenParams

    params = GenParams(students=30, courses=5, days=2, end=dt.datetime(2024, 7, 1, tzinfo=UTC), seed=7,
                       duplicate_rate=0.05, malformed_rate=0.2)
    docs = [d for batch in Generator(params).activity_batches() for d in batch]
    gen = Generator(params)
    return docs + list(gen.students()) + list(gen.courses())


HOSTILE = [
    {"_id": ObjectId(), "t": dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)},
    {"_id": "a", "t": dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)},  # before the epoch: $numberLong
    {"_id": "b", "t": DatetimeMS(2 ** 62)},  # beyond year 9999
    {"_id": "c", "x": float("nan"), "y": float("inf"), "z": -float("inf"), "w": -0.0, "v": 1e308, "u": 5e-324},
    {"_id": "d", "n": Int64(2 ** 63 - 1), "m": -(2 ** 31), "b": True, "f": False, "z": None},
    {"_id": "e", "d": Decimal128("1.10"), "bin": Binary(b"\x00\x01", 5), "by": b"raw", "u": Binary.from_uuid(uuid.uuid4())},
    {"_id": "f", "r": Regex("^a", "i"), "ts": Timestamp(1, 2)},
    {"_id": "g", "nested": {"a": [1, 2.5, {"$date": "not a wrapper"}, [dt.datetime(2030, 1, 1, tzinfo=UTC)]]}},
    {"_id": "h", "text": "ünïcödé \u2028 \"quoted\" \\ \x01 𝄞", "": "empty key", "$odd": "dollar key"},
    {"_id": {"k": ObjectId()}, "list": [], "obj": {}},
]


@pytest.mark.parametrize("doc", generated_documents() + HOSTILE)
def test_dumps_relaxed_is_json_util_text(doc):
    doc = as_read(doc)
    text = dumps_relaxed(doc)
    assert text == json_util.dumps(doc, json_options=json_util.RELAXED_JSON_OPTIONS)
    assert_loads_like_json_util(text)


@pytest.mark.parametrize("text", [
    '{"t": {"$date": "2024-01-02T03:04:05.813Z"}}',  # json_util's float arithmetic for the fraction
    '{"t": {"$date": "2024-01-02T03:04:05.1Z"}}',
    '{"t": {"$date": "2024-01-02T03:04:05Z"}}',
    '{"t": {"$date": "2024-01-02T03:04:05.123456Z"}}',  # not ours: json_util's path
    '{"t": {"$date": "2024-01-02T03:04:05+02:00"}}',
    '{"t": {"$date": {"$numberLong": "-5"}}}',
    '{"t": {"$date": 1700000000000}}',
    '{"o": {"$oid": "0123456789abcdef01234567"}}',
    '{"o": {"$oid": "0123456789ABCDEF01234567"}}',
    '{"n": {"$numberDouble": "NaN"}, "l": {"$numberLong": "7"}, "x": NaN}',
    '[1, {"a": {"b": {"$date": "2030-12-31T23:59:59.999Z"}}}]',
])
def test_loads_utc_is_json_util_values(text):
    assert same(loads_utc(text), json_util.loads(text, json_options=utc_json_options()))
    assert_loads_like_json_util(text)


@pytest.mark.parametrize("text", [
    '{"t": {"$date": "2024-13-02T03:04:05Z"}}',  # month 13
    '{"t": {"$date": "2024-01-02T03:04:05Z", "extra": 1}}',
    '{"o": {"$oid": "xyz"}}',
    '{"unterminated": ',
])
def test_loads_utc_refuses_what_json_util_refuses(text):
    with pytest.raises(Exception) as theirs:
        json_util.loads(text, json_options=utc_json_options())
    with pytest.raises(type(theirs.value)):
        loads_utc(text)


def test_the_wrapper_keys_are_json_util_s():
    """``loads_utc`` hands an object to json_util when it has one of json_util's wrapper keys."""
    from learntrack.extended_json import _WRAPPER_KEYS

    assert {"$date", "$oid", "$numberLong", "$numberDouble", "$binary"} <= _WRAPPER_KEYS


def test_random_documents_round_trip_like_json_util():
    rng = random.Random(11)

    def value(depth: int):
        pick = rng.randrange(9 if depth < 3 else 6)
        if pick == 0:
            return rng.choice(["", "x", "é", "a\"b", "$date"])
        if pick == 1:
            return rng.choice([0, -1, 2 ** 40, Int64(5)])
        if pick == 2:
            return rng.choice([0.1, -2.5, 1e-7, float("nan"), 3.0])
        if pick == 3:
            return dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(milliseconds=rng.randrange(-10**12, 10**13))
        if pick == 4:
            return rng.choice([None, True, False, ObjectId()])
        if pick == 5:
            return rng.choice(["2024-01-01T00:00:00Z", {"$date": "2024-01-01T00:00:00Z"}])
        if pick in (6, 7):
            return {rng.choice(["a", "b", "$oid", "c"]) + str(i): value(depth + 1) for i in range(rng.randrange(4))}
        return [value(depth + 1) for _ in range(rng.randrange(4))]

    for _ in range(2000):
        doc = as_read({"_id": rng.randrange(10 ** 6), "v": value(0), "w": value(0)})
        text = dumps_relaxed(doc)
        assert text == json_util.dumps(doc, json_options=json_util.RELAXED_JSON_OPTIONS)
        assert_loads_like_json_util(text)
