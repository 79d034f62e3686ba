"""Signing and verifying webhooks as the Standard Webhooks specification describes (pure).

Every request carries three headers::

    webhook-id:        the notification's id (the idempotency key: the same on every retry)
    webhook-timestamp: when this attempt was signed, integer Unix seconds
    webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">

The key is the endpoint's secret ``whsec_<base64>`` with the prefix dropped and the rest
base64-decoded (24 to 64 bytes, as the specification recommends).  A receiver accepts a
request when any of the space-separated ``v1,`` signatures matches (several are sent
while a secret is rotated; other versions are skipped) and the timestamp is within a
tolerance of its clock (5 minutes by default), which bounds how long a captured request
can be replayed.  The checks are ``tests/alerts/test_webhooks.py``, with the
specification's own test vector.

Why hand-written: the recipe is twenty lines of :mod:`hmac`; the reference library
(``standardwebhooks``) is not installed here, fixes the tolerance at 5 minutes, and lets
a malformed signature entry escape as a bare ``ValueError``.  Here a rejection is one
typed error (:class:`SignatureRejected`, an :class:`~schemas.errors.InvalidInput`) naming
the header and the fix, and the clock is a parameter, so everything is tested without
waiting.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping

from schemas.errors import InvalidInput, Problem

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SECRET_PREFIX",
    "SignatureRejected",
    "decode_secret",
    "new_secret",
    "sign",
    "signature",
    "verify",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the form's prefix, not a secret
DEFAULT_TOLERANCE_S = 300
"""How far a request's ``webhook-timestamp`` may be from the receiver's clock."""
MIN_KEY_BYTES, MAX_KEY_BYTES = 24, 64
MAKE_SECRET = "python -c 'import alerts.webhooks as w; print(w.new_secret())'"  # noqa: S105


class SignatureRejected(InvalidInput):
    """A request that is not authentic, or too old or too new to be trusted."""


def decode_secret(secret: str, path: str = "secret") -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; :class:`InvalidInput` naming ``path``
    when it is not one."""
    body = secret.removeprefix(SECRET_PREFIX)
    fix = f"use {SECRET_PREFIX} + base64 of 32 random bytes, as `{MAKE_SECRET}` prints"
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput.single("webhook secret", path, "not valid base64", fix) from None
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidInput.single(
            "webhook secret", path, f"does not start with {SECRET_PREFIX}", fix
        )
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise InvalidInput.single(
            "webhook secret",
            path,
            f"decodes to {len(key)} bytes; a key has {MIN_KEY_BYTES} to {MAX_KEY_BYTES}",
            fix,
        )
    return key


def new_secret() -> str:
    """A fresh random secret (32 bytes), in the ``whsec_`` form endpoints are configured with."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature(key: bytes, webhook_id: str, timestamp_s: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    signed = f"{webhook_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sign(secret: str, webhook_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    """The three headers of one attempt to send ``body``."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": signature(decode_secret(secret), webhook_id, timestamp_s, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now_s: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> str:
    """The ``webhook-id`` of an authentic request (header names in any case), else
    :class:`SignatureRejected` naming the header at fault.  ``body`` is the raw body as
    received: parsing and re-serialising it would change the signed bytes."""
    found = {name.lower(): value for name, value in headers.items()}
    names = ("webhook-id", "webhook-timestamp", "webhook-signature")
    missing = [name for name in names if not found.get(name)]
    if missing:
        raise SignatureRejected(
            "webhook request",
            [Problem(name, "missing", "send the Standard Webhooks headers") for name in missing],
        )
    webhook_id, stamp, offered = (found[name] for name in names)
    if not stamp.isascii() or not stamp.isdigit():
        raise _rejected("webhook-timestamp", "not integer Unix seconds", "send e.g. 1614265330")
    if abs(now_s - int(stamp)) > tolerance_s:
        raise _rejected(
            "webhook-timestamp",
            f"{int(stamp) - now_s:+.0f} s from this receiver's clock, beyond ±{tolerance_s:g} s",
            "sign each attempt when it is sent; check both clocks",
        )
    expected = signature(decode_secret(secret), webhook_id, int(stamp), body)
    for candidate in offered.split(" "):
        if candidate.startswith("v1,") and hmac.compare_digest(
            candidate.encode(), expected.encode()
        ):
            return webhook_id
    raise _rejected(
        "webhook-signature",
        "no v1 signature matches the body with this endpoint's secret",
        "sign the exact body bytes sent, with the endpoint's current secret",
    )


def _rejected(path: str, message: str, fix: str) -> SignatureRejected:
    return SignatureRejected("webhook request", [Problem(path, message, fix)])
