"""Standard Webhooks signing and verification (pure): the specification's own test
vector, a signature recomputed by hand, several signatures, the timestamp tolerance, and
every rejection naming its header."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from alerts.webhooks import (
    SignatureRejected,
    decode_secret,
    new_secret,
    sign,
    signature,
    verify,
)
from schemas.errors import InvalidInput

# The test vector of the Standard Webhooks reference libraries
# (standard-webhooks/standard-webhooks, libraries/python/tests/test_webhooks.py).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def spec_headers(signature_header: str = SPEC_SIGNATURE) -> dict[str, str]:
    return {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": signature_header,
    }


def test_the_specification_test_vector_signs_and_verifies() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == spec_headers()
    assert verify(SPEC_SECRET, spec_headers(), SPEC_BODY, now_s=SPEC_TIMESTAMP + 10) == SPEC_ID


def test_a_signature_equals_one_computed_by_hand() -> None:
    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    body = b'{"id":"ntf_1","amount":"12.50"}'
    by_hand = hmac.new(key, b"ntf_1.1700000000." + body, hashlib.sha256).digest()
    assert signature(decode_secret(secret), "ntf_1", 1_700_000_000, body) == (
        "v1," + base64.b64encode(by_hand).decode()
    )


def test_any_of_several_signatures_may_match_and_other_versions_are_skipped() -> None:
    wrong = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
    several = f"{wrong} v2,{SPEC_SIGNATURE[3:]} garbage {SPEC_SIGNATURE}"
    assert verify(SPEC_SECRET, spec_headers(several), SPEC_BODY, now_s=SPEC_TIMESTAMP) == SPEC_ID
    # a v2 entry carrying the right bytes is not a v1 signature
    with pytest.raises(SignatureRejected, match="webhook-signature"):
        verify(
            SPEC_SECRET,
            spec_headers(f"{wrong} v2,{SPEC_SIGNATURE[3:]}"),
            SPEC_BODY,
            now_s=SPEC_TIMESTAMP,
        )


def test_header_names_are_case_insensitive() -> None:
    headers = {name.title(): value for name, value in spec_headers().items()}
    assert verify(SPEC_SECRET, headers, SPEC_BODY, now_s=SPEC_TIMESTAMP) == SPEC_ID


@pytest.mark.parametrize("skew", [-301, 301, -10_000])
def test_a_timestamp_beyond_the_tolerance_is_refused(skew: int) -> None:
    with pytest.raises(SignatureRejected) as caught:
        verify(SPEC_SECRET, spec_headers(), SPEC_BODY, now_s=SPEC_TIMESTAMP - skew)
    assert caught.value.problems[0].path == "webhook-timestamp"
    assert caught.value.problems[0].fix
    # within a wider tolerance the same request passes
    assert verify(
        SPEC_SECRET, spec_headers(), SPEC_BODY, now_s=SPEC_TIMESTAMP - skew, tolerance_s=20_000
    )


def test_the_tolerance_boundary_is_inclusive() -> None:
    for now in (SPEC_TIMESTAMP - 300, SPEC_TIMESTAMP + 300):
        assert verify(SPEC_SECRET, spec_headers(), SPEC_BODY, now_s=now) == SPEC_ID


def test_a_changed_body_id_or_secret_is_refused() -> None:
    now = SPEC_TIMESTAMP
    with pytest.raises(SignatureRejected, match="webhook-signature"):
        verify(SPEC_SECRET, spec_headers(), b'{"test": 2432232315}', now_s=now)
    with pytest.raises(SignatureRejected, match="webhook-signature"):
        verify(SPEC_SECRET, {**spec_headers(), "webhook-id": "msg_other"}, SPEC_BODY, now_s=now)
    with pytest.raises(SignatureRejected, match="webhook-signature"):
        verify(new_secret(), spec_headers(), SPEC_BODY, now_s=now)


def test_missing_and_malformed_headers_are_named() -> None:
    with pytest.raises(SignatureRejected) as caught:
        verify(SPEC_SECRET, {"webhook-id": SPEC_ID}, SPEC_BODY, now_s=SPEC_TIMESTAMP)
    assert [p.path for p in caught.value.problems] == ["webhook-timestamp", "webhook-signature"]
    bad_time = {**spec_headers(), "webhook-timestamp": "1614265330.5"}
    with pytest.raises(SignatureRejected, match="webhook-timestamp: not integer Unix seconds"):
        verify(SPEC_SECRET, bad_time, SPEC_BODY, now_s=SPEC_TIMESTAMP)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "does not start with whsec_"),
        ("whsec_not base64!", "not valid base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "decodes to 5 bytes"),
        ("whsec_" + base64.b64encode(bytes(65)).decode(), "decodes to 65 bytes"),
    ],
)
def test_a_bad_secret_is_refused_with_its_path_and_fix(secret: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        decode_secret(secret, "endpoints[0].secret")
    assert caught.value.problems[0].path == "endpoints[0].secret"
    assert "new_secret()" in caught.value.problems[0].fix


def test_new_secrets_are_valid_and_distinct() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    assert len(decode_secret(first)) == 32
