from __future__ import annotations

import base64

import pytest

from taskgate.outbound.secretbox import (
    SecretBox,
    SecretBoxError,
    derive_key_from_secret,
    generate_key,
    redact,
)


def _box(*kids: str) -> SecretBox:
    return SecretBox.from_settings(",".join(f"{kid}:{generate_key()}" for kid in kids))


def test_a_secret_round_trips_under_the_active_key() -> None:
    box = _box("k2", "k1")
    ciphertext, kid = box.encrypt("hunter2 ✓", aad=b"destination:1")
    assert kid == "k2"
    assert b"hunter2" not in ciphertext
    assert box.decrypt(ciphertext, kid, aad=b"destination:1") == "hunter2 ✓"


def test_each_encryption_uses_a_fresh_nonce() -> None:
    box = _box("k1")
    assert box.encrypt("same")[0] != box.encrypt("same")[0]


@pytest.mark.parametrize("position", [0, 12, -1])
def test_a_tampered_ciphertext_is_refused(position: int) -> None:
    box = _box("k1")
    ciphertext, kid = box.encrypt("token")
    tampered = bytearray(ciphertext)
    tampered[position] ^= 0x01
    with pytest.raises(SecretBoxError, match="authentication"):
        box.decrypt(bytes(tampered), kid)


def test_a_ciphertext_moved_to_another_row_is_refused() -> None:
    box = _box("k1")
    ciphertext, kid = box.encrypt("token", aad=b"destination:1")
    with pytest.raises(SecretBoxError):
        box.decrypt(ciphertext, kid, aad=b"destination:2")
    with pytest.raises(SecretBoxError):
        box.decrypt(ciphertext, kid)


def test_an_unknown_kid_or_truncated_ciphertext_is_refused() -> None:
    box = _box("k1")
    ciphertext, _ = box.encrypt("token")
    with pytest.raises(SecretBoxError, match="unknown key id 'k9'"):
        box.decrypt(ciphertext, "k9")
    with pytest.raises(SecretBoxError, match="too short"):
        box.decrypt(ciphertext[:20], "k1")


def test_rotation_reseals_under_the_new_active_key() -> None:
    old_key, new_key = generate_key(), generate_key()
    before = SecretBox.from_settings(f"old:{old_key}")
    ciphertext, kid = before.encrypt("xoxb-token", aad=b"row")

    after = SecretBox.from_settings(f"new:{new_key}, old:{old_key}")
    rotated, new_kid = after.rotate(ciphertext, kid, aad=b"row")
    assert new_kid == "new"
    assert after.decrypt(rotated, new_kid, aad=b"row") == "xoxb-token"
    assert after.rotate(rotated, new_kid, aad=b"row") == (rotated, "new")

    # Once the old key is dropped, only the rotated ciphertext still opens.
    only_new = SecretBox.from_settings(f"new:{new_key}")
    assert only_new.decrypt(rotated, "new", aad=b"row") == "xoxb-token"
    with pytest.raises(SecretBoxError, match="unknown key id"):
        only_new.decrypt(ciphertext, kid, aad=b"row")


def test_settings_can_name_the_active_key() -> None:
    box = SecretBox.from_settings(f"a:{generate_key()},b:{generate_key()}", active_kid="b")
    assert box.active_kid == "b"
    assert box.encrypt("x")[1] == "b"


def test_url_safe_base64_keys_are_accepted() -> None:
    key = bytes(range(200, 232))
    box = SecretBox.from_settings("k:" + base64.urlsafe_b64encode(key).decode().rstrip("="))
    assert box.decrypt(*box.encrypt("ok")) == "ok"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("", "no keys"),
        ("k1", "kid:base64key"),
        (":" + base64.b64encode(bytes(32)).decode(), "kid:base64key"),
        ("k1:" + base64.b64encode(bytes(16)).decode(), "32 bytes"),
        ("k1:not*base64!", "not valid base64"),
        ("k1:{key},k1:{key}", "twice"),
    ],
)
def test_bad_key_settings_are_explained(setting: str, message: str) -> None:
    setting = setting.replace("{key}", generate_key())
    with pytest.raises(SecretBoxError, match=message):
        SecretBox.from_settings(setting)


def test_a_bad_key_is_never_echoed() -> None:
    with pytest.raises(SecretBoxError) as caught:
        SecretBox.from_settings("k1:c2VjcmV0LWtleS1tYXRlcmlhbA==")
    assert "c2VjcmV0" not in str(caught.value)


def test_an_unknown_active_kid_is_refused() -> None:
    with pytest.raises(SecretBoxError, match="active key id"):
        SecretBox({"a": bytes(32)}, "b")


def test_keys_derived_from_a_master_secret_are_stable_and_purpose_bound() -> None:
    secret = "a-long-random-master-secret-from-the-environment"
    key = derive_key_from_secret(secret, purpose="secretbox")
    assert len(key) == 32
    assert key == derive_key_from_secret(secret, purpose="secretbox")
    assert key != derive_key_from_secret(secret, purpose="jwt")
    assert key != derive_key_from_secret(secret + "x", purpose="secretbox")

    box = SecretBox.from_master_secret(secret)
    again = SecretBox.from_master_secret(secret)
    assert again.decrypt(*box.encrypt("survives a restart")) == "survives a restart"
    with pytest.raises(SecretBoxError):
        derive_key_from_secret("", purpose="secretbox")


def test_generated_keys_are_random_32_byte_base64() -> None:
    assert len(base64.b64decode(generate_key())) == 32
    assert generate_key() != generate_key()


def test_redact_hides_secret_looking_keys_at_any_depth() -> None:
    value = {
        "url": "https://example.com/hook",
        "Signing_Secret": "whsec_x",
        "headers": {"Authorization": "Bearer abc", "X-Api-Key": "k", "accept": "json"},
        "steps": [{"db_password": "p", "name": "load"}, ("plain", {"hookToken": "t"})],
        "usage": {"prompt_tokens": 12, "max_tokens": 100},
        "refresh_token": None,
    }
    assert redact(value) == {
        "url": "https://example.com/hook",
        "Signing_Secret": "***",
        "headers": {"Authorization": "***", "X-Api-Key": "***", "accept": "json"},
        "steps": [{"db_password": "***", "name": "load"}, ("plain", {"hookToken": "***"})],
        "usage": {"prompt_tokens": 12, "max_tokens": 100},
        "refresh_token": None,
    }
    assert value["headers"] == {"Authorization": "Bearer abc", "X-Api-Key": "k", "accept": "json"}


def test_redact_accepts_extra_exact_keys() -> None:
    assert redact({"dsn": "postgres://u:p@h/db", "name": "n"}, frozenset({"dsn"})) == {
        "dsn": "***",
        "name": "n",
    }
