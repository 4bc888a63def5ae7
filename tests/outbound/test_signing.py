from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from taskgate.outbound.signing import (
    SignatureError,
    generate_webhook_secret,
    sign_standard,
    standard_headers,
    verify_hmac_sha256,
    verify_standard,
)

# The example of the Standard Webhooks specification and its reference libraries.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _independent_signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.HMAC(key, digestmod="sha256")
    for part in (msg_id.encode(), b".", str(timestamp).encode(), b".", body):
        mac.update(part)
    return "v1," + base64.b64encode(mac.digest()).decode()


def test_the_specification_example_signs_as_published() -> None:
    key = base64.b64decode(SPEC_SECRET.removeprefix("whsec_"))
    assert _independent_signature(key, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    assert sign_standard(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_the_specification_example_verifies() -> None:
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    verify_standard(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP + 10)


def test_a_raw_secret_is_used_as_its_bytes() -> None:
    signature = sign_standard("plain-secret", "msg_1", 1700000000, b"{}")
    assert signature == _independent_signature(b"plain-secret", "msg_1", 1700000000, b"{}")


def test_headers_round_trip_through_verification() -> None:
    secret = generate_webhook_secret()
    body = b'{"type":"task.completed"}'
    headers = standard_headers(secret, "42", body, now=1700000000.9)
    assert headers["webhook-id"] == "42"
    assert headers["webhook-timestamp"] == "1700000000"
    verify_standard(secret, headers, body, now=1700000000)
    # Header names are matched whatever their case.
    verify_standard(secret, {k.title(): v for k, v in headers.items()}, body, now=1700000000)


def _signed(body: bytes, now: int, secret: str = SPEC_SECRET) -> dict[str, str]:
    return standard_headers(secret, "msg_1", body, now)


def test_a_tampered_body_is_refused() -> None:
    headers = _signed(b'{"amount":1}', 1700000000)
    with pytest.raises(SignatureError) as caught:
        verify_standard(SPEC_SECRET, headers, b'{"amount":9}', now=1700000000)
    assert caught.value.reason == "no_matching_signature"


def test_a_changed_id_or_wrong_secret_is_refused() -> None:
    headers = _signed(b"{}", 1700000000)
    with pytest.raises(SignatureError):
        verify_standard(SPEC_SECRET, {**headers, "webhook-id": "msg_2"}, b"{}", now=1700000000)
    with pytest.raises(SignatureError):
        verify_standard(generate_webhook_secret(), headers, b"{}", now=1700000000)


@pytest.mark.parametrize(
    ("skew", "reason"), [(-301, "timestamp_too_old"), (301, "timestamp_too_new")]
)
def test_a_timestamp_outside_the_tolerance_is_refused(skew: int, reason: str) -> None:
    now = 1700000000
    headers = _signed(b"{}", now + skew)
    with pytest.raises(SignatureError) as caught:
        verify_standard(SPEC_SECRET, headers, b"{}", now=now)
    assert caught.value.reason == reason
    verify_standard(SPEC_SECRET, _signed(b"{}", now + skew // 2), b"{}", now=now)


def test_any_one_of_several_signatures_may_match() -> None:
    """During a secret rotation the sender signs with both secrets."""
    new_secret = generate_webhook_secret()
    old = _signed(b"{}", 1700000000)["webhook-signature"]
    new = _signed(b"{}", 1700000000, new_secret)["webhook-signature"]
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
        "webhook-signature": f"v1a,c29tZXRoaW5n {new} {old}",
    }
    verify_standard(SPEC_SECRET, headers, b"{}", now=1700000000)
    verify_standard(new_secret, headers, b"{}", now=1700000000)
    with pytest.raises(SignatureError):
        verify_standard(SPEC_SECRET, {**headers, "webhook-signature": new}, b"{}", now=1700000000)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_named(missing: str) -> None:
    headers = _signed(b"{}", 1700000000)
    del headers[missing]
    with pytest.raises(SignatureError, match=missing) as caught:
        verify_standard(SPEC_SECRET, headers, b"{}", now=1700000000)
    assert caught.value.reason == "missing_headers"


def test_a_non_integer_timestamp_is_refused() -> None:
    headers = {**_signed(b"{}", 1700000000), "webhook-timestamp": "1700000000.5"}
    with pytest.raises(SignatureError) as caught:
        verify_standard(SPEC_SECRET, headers, b"{}", now=1700000000)
    assert caught.value.reason == "invalid_timestamp"


def test_a_malformed_whsec_secret_is_refused() -> None:
    with pytest.raises(SignatureError) as caught:
        sign_standard("whsec_***", "msg_1", 1, b"")
    assert caught.value.reason == "invalid_secret"


def test_generated_secrets_carry_24_random_bytes() -> None:
    secret = generate_webhook_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    assert secret != generate_webhook_secret()


HMAC_SECRET = "It's a Secret to Everybody"
HMAC_BODY = b"Hello, World!"


def _hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("prefix", ["sha256=", "", "SHA256="])
def test_hmac_sha256_accepts_prefixed_or_bare_hex(prefix: str) -> None:
    digest = _hex(HMAC_SECRET, HMAC_BODY)
    verify_hmac_sha256(HMAC_SECRET, prefix + digest, HMAC_BODY)
    verify_hmac_sha256(HMAC_SECRET, prefix + digest.upper(), HMAC_BODY)


def test_hmac_sha256_matches_githubs_documented_example() -> None:
    expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    verify_hmac_sha256(HMAC_SECRET, f"sha256={expected}", HMAC_BODY)


@pytest.mark.parametrize(
    ("header", "body", "reason"),
    [
        (None, HMAC_BODY, "missing_headers"),
        ("", HMAC_BODY, "missing_headers"),
        ("sha1=" + "0" * 40, HMAC_BODY, "malformed_signature"),
        ("sha256=xyz", HMAC_BODY, "malformed_signature"),
        ("sha256=" + _hex(HMAC_SECRET, HMAC_BODY), b"Hello, World?", "no_matching_signature"),
        ("sha256=" + _hex("other", HMAC_BODY), HMAC_BODY, "no_matching_signature"),
    ],
)
def test_hmac_sha256_refusals_say_why(header: str | None, body: bytes, reason: str) -> None:
    with pytest.raises(SignatureError) as caught:
        verify_hmac_sha256(HMAC_SECRET, header, body)
    assert caught.value.reason == reason
