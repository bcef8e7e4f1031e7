"""`app.core.security`: password hashing and the access-token format, without HTTP."""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
import unicodedata
import uuid
from typing import Any

import jwt
import pytest

from app.core import security
from app.core.security import (
    ACCESS_TOKEN_TYPE,
    JWT_AUDIENCE,
    JWT_ISSUER,
    JWT_LEEWAY_SECONDS,
    AccessClaims,
    InvalidToken,
    create_access_token,
    decode_access_token,
    hash_password,
    hash_password_async,
    hash_rounds,
    normalize_password,
    verify_password,
    verify_password_async,
)

ROUNDS = 4
KEY = "unit-test-signing-key-" + "k" * 40
OTHER_KEY = "another-signing-key-of-32-bytes-" + "o" * 16
PASSWORD = "correct horse battery staple"


_MISSING: Any = object()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "sub": "42",
        "iat": now,
        "exp": now + 900,
        "jti": uuid.uuid4().hex,
        "iss": JWT_ISSUER,
        "aud": JWT_AUDIENCE,
        "tv": 3,
        "kind": "access",
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not _MISSING}


def forge(
    payload: dict[str, Any],
    *,
    key: str = KEY,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
) -> str:
    return jwt.encode(
        payload, key, algorithm=algorithm, headers={"typ": ACCESS_TOKEN_TYPE, **(headers or {})}
    )


def unsigned(payload: dict[str, Any], alg: str) -> str:
    """A token with `alg` set to a `none` variant and an empty signature."""

    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': alg, 'typ': ACCESS_TOKEN_TYPE})}.{part(payload)}."


class TestPasswordHashing:
    def test_round_trip(self) -> None:
        stored = hash_password(PASSWORD, ROUNDS)
        assert verify_password(PASSWORD, stored)
        assert not verify_password(PASSWORD + "!", stored)
        assert not verify_password("", stored)
        assert PASSWORD not in stored

    def test_salted(self) -> None:
        assert hash_password(PASSWORD, ROUNDS) != hash_password(PASSWORD, ROUNDS)

    def test_rounds_recorded(self) -> None:
        assert hash_rounds(hash_password(PASSWORD, 4)) == 4
        assert hash_rounds(hash_password(PASSWORD, 5)) == 5
        assert hash_rounds("garbage") is None

    @pytest.mark.parametrize(
        ("common", "first", "second"),
        [
            ("é" * 36, "a", "b"),  # 72 bytes of two-byte characters, then one differing byte
            ("€" * 24, "x", "y"),  # 72 bytes of three-byte characters
            ("😀" * 18, "1", "2"),  # 72 bytes of four-byte characters
            ("😀" * 25, "€", "é"),  # a 100-byte shared prefix
        ],
    )
    def test_every_byte_past_72_counts(self, common: str, first: str, second: str) -> None:
        one, two = common + first, common + second
        assert len(common.encode("utf-8")) >= 72
        stored = hash_password(one, ROUNDS)
        assert verify_password(one, stored)
        assert not verify_password(two, stored)

    def test_long_multibyte_password_does_not_raise(self) -> None:
        password = "🔐" * 128  # 512 bytes: bcrypt 5 alone raises on this
        stored = hash_password(password, ROUNDS)
        assert verify_password(password, stored)
        assert not verify_password("🔐" * 127, stored)
        assert not verify_password("x" * 10_000, stored)

    def test_nul_bytes_are_not_a_truncation_point(self) -> None:
        stored = hash_password("prefix-is-long\x00suffix-a", ROUNDS)
        assert not verify_password("prefix-is-long\x00suffix-b", stored)
        assert not verify_password("prefix-is-long", stored)

    def test_nfkc_applied_on_both_sides(self) -> None:
        fullwidth = "ｆｕｌｌｗｉｄｔｈ ｐａｓｓｗｏｒｄ"
        ascii_form = "fullwidth password"
        assert normalize_password(fullwidth) == ascii_form
        assert verify_password(ascii_form, hash_password(fullwidth, ROUNDS))
        assert verify_password(fullwidth, hash_password(ascii_form, ROUNDS))

    def test_composed_and_decomposed_forms_match(self) -> None:
        decomposed = "cafe\u0301 au lait, s'il vous plait"
        composed = unicodedata.normalize("NFC", decomposed)
        assert composed != decomposed
        assert verify_password(composed, hash_password(decomposed, ROUNDS))

    @pytest.mark.parametrize(
        "stored",
        [
            "",
            "not a hash",
            "$2b$04$tooshort",
            "bcrypt-hmac-sha256$",
            "bcrypt-hmac-sha256$$2b$04$short",
            "bcrypt-hmac-sha256$not-bcrypt-at-all",
            "bcrypt-hmac-sha256$$2b$99$" + "a" * 53,
            "bcrypt-hmac-sha256$$2b$04$" + "é" * 53,
        ],
    )
    def test_verify_on_corrupt_hash_is_false(self, stored: str) -> None:
        assert verify_password(PASSWORD, stored) is False

    def test_plain_bcrypt_hash_is_not_accepted(self) -> None:
        import bcrypt

        plain = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=ROUNDS)).decode()
        assert verify_password(PASSWORD, plain) is False

    async def test_async_variants(self) -> None:
        stored = await hash_password_async(PASSWORD, ROUNDS)
        assert await verify_password_async(PASSWORD, stored)
        assert not await verify_password_async("wrong " + PASSWORD, stored)


class TestAccessTokenRoundTrip:
    def test_created_token_decodes(self) -> None:
        token, lifetime = create_access_token(
            user_id=7, token_version=2, key=KEY, expire_minutes=15
        )
        assert lifetime == 900
        decoded = decode_access_token(token, key=KEY)
        assert isinstance(decoded, AccessClaims)
        assert decoded.user_id == 7
        assert decoded.token_version == 2
        assert decoded.expires_at - decoded.issued_at == 900

    def test_token_format(self) -> None:
        token, _ = create_access_token(user_id=7, token_version=1, key=KEY, expire_minutes=15)
        header = jwt.get_unverified_header(token)
        assert header == {"alg": "HS256", "typ": ACCESS_TOKEN_TYPE}
        payload = jwt.decode(token, options={"verify_signature": False})
        assert set(payload) == {"sub", "iat", "exp", "jti", "iss", "aud", "tv", "kind"}
        assert payload["kind"] == "access"
        assert payload["sub"] == "7"

    def test_unique_jti(self) -> None:
        jtis = set()
        for _ in range(3):
            token, _ = create_access_token(user_id=7, token_version=1, key=KEY, expire_minutes=15)
            jtis.add(jwt.decode(token, options={"verify_signature": False})["jti"])
        assert len(jtis) == 3

    def test_forged_valid_token_decodes(self) -> None:
        # The forging helpers below produce tokens the decoder accepts when nothing is wrong,
        # so each rejection is caused by the one thing changed.
        assert decode_access_token(forge(claims()), key=KEY).user_id == 42

    def test_expiry_within_leeway_accepted(self) -> None:
        now = int(time.time())
        token = forge(claims(iat=now - 900, exp=now - 1))
        assert JWT_LEEWAY_SECONDS >= 2
        assert decode_access_token(token, key=KEY).user_id == 42


class TestVerifiedTokenCache:
    """Verified tokens are remembered (app/core/security.py); nothing else changes."""

    def test_a_remembered_token_still_expires(self, monkeypatch: pytest.MonkeyPatch) -> None:
        now = int(time.time())
        token = forge(claims(iat=now, exp=now + 60))
        assert decode_access_token(token, key=KEY).user_id == 42  # verified and remembered
        later = now + 60 + JWT_LEEWAY_SECONDS
        monkeypatch.setattr("app.core.security.time.time", lambda: float(later))
        with pytest.raises(InvalidToken):
            decode_access_token(token, key=KEY)

    def test_a_remembered_token_is_not_valid_under_another_key(self) -> None:
        token = forge(claims())
        assert decode_access_token(token, key=KEY).user_id == 42
        with pytest.raises(InvalidToken):
            decode_access_token(token, key="another-key-" + "y" * 40)

    def test_one_changed_character_is_verified_afresh(self) -> None:
        token = forge(claims())
        assert decode_access_token(token, key=KEY).user_id == 42
        header, payload, signature = token.split(".")
        flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
        with pytest.raises(InvalidToken):
            decode_access_token(f"{header}.{payload}.{flipped}", key=KEY)
        with pytest.raises(InvalidToken):
            decode_access_token(_tampered_sub(), key=KEY)

    def test_rejections_are_not_remembered_as_successes(self) -> None:
        now = int(time.time())
        early = forge(claims(iat=now + 3600, exp=now + 4500))  # issued in the future
        for _ in range(2):
            with pytest.raises(InvalidToken):
                decode_access_token(early, key=KEY)


def _tampered_sub() -> str:
    header, payload, signature = forge(claims(sub="42")).split(".")
    other_payload = forge(claims(sub="43")).split(".")[1]
    return f"{header}.{other_payload}.{signature}"


def _now() -> int:
    return int(time.time())


BAD_TOKENS: dict[str, Any] = {
    "alg none": lambda: unsigned(claims(), "none"),
    "alg NONE": lambda: unsigned(claims(), "NONE"),
    "alg None": lambda: unsigned(claims(), "None"),
    "tampered payload": _tampered_sub,
    "other key": lambda: forge(claims(), key=OTHER_KEY),
    "HS512": lambda: forge(claims(), algorithm="HS512"),
    "HS384": lambda: forge(claims(), algorithm="HS384"),
    "missing exp": lambda: forge(claims(exp=_MISSING)),
    "missing iat": lambda: forge(claims(iat=_MISSING)),
    "missing jti": lambda: forge(claims(jti=_MISSING)),
    "missing aud": lambda: forge(claims(aud=_MISSING)),
    "missing iss": lambda: forge(claims(iss=_MISSING)),
    "missing sub": lambda: forge(claims(sub=_MISSING)),
    "missing tv": lambda: forge(claims(tv=_MISSING)),
    "exp as string": lambda: forge(claims(exp="tomorrow")),
    "expired": lambda: forge(claims(iat=_now() - 1000, exp=_now() - 60)),
    "iat in the future": lambda: forge(claims(iat=_now() + 3600, exp=_now() + 4500)),
    "wrong aud": lambda: forge(claims(aud="another-api")),
    "wrong iss": lambda: forge(claims(iss="https://evil.example")),
    "typ JWT": lambda: forge(claims(), headers={"typ": "JWT"}),
    "typ refresh": lambda: forge(claims(), headers={"typ": "refresh+jwt"}),
    "no typ": lambda: jwt.encode(claims(), KEY, algorithm="HS256"),
    "sub not a number": lambda: forge(claims(sub="alice")),
    "sub zero": lambda: forge(claims(sub="0")),
    "sub too large": lambda: forge(claims(sub=str(2**63))),
    "tv as string": lambda: forge(claims(tv="3")),
    "tv as bool": lambda: forge(claims(tv=True)),
    "random string": lambda: "not-a-jwt-at-all",
    "three random parts": lambda: "abc.def.ghi",
    "empty": lambda: "",
    "16 KB garbage": lambda: "A" * 16_384,
}


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
class TestAccessTokenRejected:
    @pytest.mark.parametrize("case", list(BAD_TOKENS))
    def test_rejected(self, case: str) -> None:
        token = BAD_TOKENS[case]()
        with pytest.raises(InvalidToken):
            decode_access_token(token, key=KEY)

    def test_reason_does_not_leak_the_key(self) -> None:
        with pytest.raises(InvalidToken) as caught:
            decode_access_token(forge(claims(), key=OTHER_KEY), key=KEY)
        assert KEY not in str(caught.value)


class TestHashingThreads:
    """bcrypt runs on its own low-priority threads, never on the event loop's."""

    @pytest.mark.parametrize("call", ["hash", "verify", "dummy"])
    async def test_hashing_runs_off_the_loop_at_low_priority(
        self, monkeypatch: pytest.MonkeyPatch, call: str
    ) -> None:
        seen: list[tuple[str, int]] = []
        real_hash, real_verify = security.hash_password, security.verify_password

        def where() -> None:
            nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            seen.append((threading.current_thread().name, nice))

        def spy_hash(password: str, rounds: int) -> str:
            where()
            return real_hash(password, rounds)

        def spy_verify(password: str, stored: str) -> bool:
            where()
            return real_verify(password, stored)

        stored = real_hash("a passphrase long enough", 4)
        monkeypatch.setattr(security, "hash_password", spy_hash)
        monkeypatch.setattr(security, "verify_password", spy_verify)
        if call == "hash":
            await security.hash_password_async("a passphrase long enough", 4)
        elif call == "verify":
            assert await security.verify_password_async("a passphrase long enough", stored)
        else:
            await security.verify_against_dummy("a passphrase long enough", 4)
        assert seen, "the hashing function was not called"
        for thread_name, nice in seen:
            assert thread_name.startswith("bcrypt"), thread_name
            assert thread_name != threading.current_thread().name
            if sys.platform == "linux":
                assert nice == 19
