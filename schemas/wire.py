"""The Kafka wire format of the events topic.

Partition: the one the subject's key gets from Kafka's default partitioner,
CRC-32 of the subject in UTF-8 modulo the partition count (:func:`subject_partition`), so
one subject's events share a partition (and so its windows, its dedupe state and its
ordering).  Key: the event's ``subject`` in UTF-8 when the record holds one subject's
events; none when it packs several subjects of one partition (the SDK's records: a
subject that sends rarely still shares a record with the others of its partition).

Value: either one event as JSON, or — with the record header
``content-type: application/x-ndjson`` — several events, each as compact JSON on its own
line, every one of them of a subject whose partition is the record's.  Compact JSON never
holds a raw newline (string newlines are escaped), so the lines split back into the exact
bytes of each event.  Packing events into records is what lets the worker meter far more
events per second than the consumer can hand it records: the per-record cost (Kafka
fetch, Faust dispatch, acknowledgement) is paid once per record, not per event.  An event
inside a record is identified by its position ``(partition, offset, index)``.

Records may be compressed by their producer (Kafka's record-batch compression:
``none``, ``gzip``, ``snappy``, ``lz4`` or ``zstd``, :data:`COMPRESSION_CODECS`); the
broker stores a batch as its producer compressed it and every consumer gets the value
back byte for byte, so a topic may hold records of several codecs.  Meterline's producers
use ``zstd`` unless told otherwise (:data:`DEFAULT_COMPRESSION`): packed telemetry is
repetitive JSON, which the broker then stores and serves in about a tenth of its bytes
(lz4: a sixth) for under a microsecond of the producer's CPU per event and no change
measurable in the worker's (``docs/benchmarks.md``).

``time`` is written in RFC 3339 with milliseconds and ``Z``.  Decoding keeps every number
exact: fractions become :class:`decimal.Decimal`, never a binary float, so a value like
``0.1000000000000000055`` is metered exactly as written.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, Literal, get_args

import orjson

from schemas.errors import InvalidInput
from schemas.events import UsageEvent, parse_event

__all__ = [
    "BATCH_CONTENT_TYPE",
    "COMPRESSION_CODECS",
    "CONTENT_TYPE_HEADER",
    "DEFAULT_COMPRESSION",
    "MAX_EVENT_BYTES",
    "SURROGATE_ESCAPE",
    "Compression",
    "content_hash",
    "decode_event",
    "encode_event",
    "encode_record",
    "event_key",
    "is_batch",
    "record_value",
    "split_record",
    "subject_partition",
]

SURROGATE_ESCAPE = re.compile(rb"\\u[dD]")
"""Any escape from ``\\ud000`` to ``\\udfff`` in JSON bytes, UTF-16 surrogates among
them: a pair is valid, a lone one is refused by the reference reader, so the lean
decoders leave a line holding one to it.  One regex scan is cheaper here than the three
substring tests it replaces."""

CONTENT_TYPE_HEADER = "content-type"
BATCH_CONTENT_TYPE = b"application/x-ndjson"

MAX_EVENT_BYTES = 900_000
"""The most one encoded event may take: it must fit a Kafka record under the clients'
``message.max.bytes`` (librdkafka's 1,000,000 by default) with the record's key and
headers.  The encoding writes every digit of a number, so a short literal can grow
(``1e999`` is 1,000 bytes encoded)."""

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
"""A producer's record-batch compression (librdkafka's ``compression.type``)."""
COMPRESSION_CODECS: tuple[Compression, ...] = get_args(Compression)
DEFAULT_COMPRESSION: Compression = "zstd"


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Exact either way: integers as JSON integers, fractions as numeric strings
        # (value properties accept both), never through a binary float.
        return int(value) if value == value.to_integral_value() else format(value, "f")
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_event(event: UsageEvent) -> bytes:
    """Compact JSON.  orjson first; integers beyond 64 bits, lone surrogates or very deep
    nesting fall back to the standard library, which encodes them exactly."""
    payload = event.to_wire()
    try:
        return orjson.dumps(payload, default=_default)
    except orjson.JSONEncodeError:
        return json.dumps(payload, default=_default, separators=(",", ":")).encode()


def event_key(event: UsageEvent) -> bytes:
    return event.subject.encode("utf-8")


def subject_partition(subject: str, partitions: int) -> int:
    """The partition of ``subject``'s events among ``partitions``: where Kafka's default
    partitioner (librdkafka's ``consistent_random``: CRC-32 of the key) puts a record keyed
    by the subject, so a record packing several subjects lands where each of them would
    alone, and any producer that keys by subject agrees with it."""
    return zlib.crc32(subject.encode("utf-8")) % partitions


def encode_record(events: Sequence[UsageEvent]) -> bytes:
    """Several events of one subject as one record value (one compact JSON per line).

    Send it with the header ``content-type: application/x-ndjson`` and the subject as key.
    """
    if not events:
        raise ValueError("a record holds at least one event")
    subject = events[0].subject
    if any(e.subject != subject for e in events):
        raise ValueError("one record holds the events of one subject (its key)")
    return record_value([encode_event(e) for e in events])[0]


def record_value(encoded: Sequence[bytes]) -> tuple[bytes, list[tuple[str, bytes]] | None]:
    """``(value, headers)`` of the record carrying these encoded events (of one subject,
    or of subjects of one partition): one event as itself, several as lines under the
    batch content type."""
    if len(encoded) == 1:
        return encoded[0], None
    return b"\n".join(encoded), [(CONTENT_TYPE_HEADER, BATCH_CONTENT_TYPE)]


def is_batch(headers: Iterable[tuple[str, bytes | None]] | None) -> bool:
    """Whether record headers mark the value as several newline-separated events."""
    return any(
        name.lower() == CONTENT_TYPE_HEADER and value == BATCH_CONTENT_TYPE
        for name, value in headers or ()
    )


def split_record(value: bytes, batch: bool) -> list[bytes]:
    """The events of a record value, as the exact bytes each was sent with."""
    if not batch:
        return [value]
    return [line for line in value.split(b"\n") if line.strip()]


def decode_event(raw: bytes) -> UsageEvent:
    """Bytes from the events topic → a validated event; :class:`InvalidInput` if not one.

    Only UTF-8 is read (``json.loads`` on bytes would also take UTF-16 and UTF-32, which the
    raw-event store cannot keep), and every way the decoder can fail — a number beyond
    any Decimal (``1e99999999999999999999``), nesting past the recursion limit — is an
    invalid event, never an exception that would stop the worker on every retry."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput.single(
            "usage event", "", "not UTF-8 text", "send JSON encoded as UTF-8"
        ) from None
    try:
        payload = _loads_exact(raw, text)
    except (ValueError, ArithmeticError, RecursionError) as exc:
        raise InvalidInput.single(
            "usage event", "", f"not valid JSON ({exc!r:.200})", "send one JSON object per event"
        ) from None
    if not isinstance(payload, dict):
        raise InvalidInput.single(
            "usage event", "", "expected a JSON object", "send one JSON object per event"
        )
    return parse_event(payload)


def _has_float(value: Any) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is float:
            return True
        if kind is dict:
            pending.extend(item.values())
        elif kind is list:
            pending.extend(item)
    return False


def _loads_exact(raw: bytes, text: str) -> Any:
    """JSON with every number exact.

    orjson is several times faster than the standard library but reads fractions (and
    integers beyond 64 bits) as binary floats.  Its result is used only when it holds no
    float; otherwise, or when orjson refuses the text (``NaN``, a lone surrogate escape),
    the standard library decodes it with ``Decimal`` numbers and has the last word.
    """
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(text, parse_float=Decimal)
    if type(payload) is not dict or _has_float(payload.get("data")):
        # Only data carries quantities; a float anywhere else is refused by validation.
        return json.loads(text, parse_float=Decimal)
    return payload


def content_hash(event: UsageEvent) -> str:
    """A digest of everything that makes up the event, to tell a retry from a conflict.

    orjson writes the canonical form; what it cannot write (an integer beyond 64 bits,
    nesting deeper than it goes) is written by the standard library the same way
    (sorted keys, no spaces, non-ASCII as is), so such an event gets a digest instead of
    stopping the worker."""
    wire = event.to_wire()
    try:
        canonical = orjson.dumps(wire, default=str, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        canonical = json.dumps(
            wire, default=str, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8")
    return hashlib.blake2b(canonical, digest_size=12).hexdigest()
