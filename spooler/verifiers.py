"""Slow salted verifiers (scrypt) for secrets such as private-print hold keys: store these, never the secret.

Also the *lookup KDF* of the offline login: one scrypt with a salt shared by every PIN and card of
a device (`scrypt$n$r$p$salt`, no digest), whose output is indexed under a keyed HMAC, so that a
PIN typed without a user name costs one scrypt instead of one per stored verifier.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
#: scrypt needs 128 * n * r bytes; parameters asking for more than OpenSSL's default limit are refused.
SCRYPT_MAX_MEMORY = 32 * 1024**2


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def make_verifier(secret: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """`scrypt$n$r$p$salt$hash`, all the parameters needed to check the secret later."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def check_verifier(secret: str, verifier: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = verifier.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            secret.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def verifier_parameters(verifier: str) -> tuple[int, int, int] | None:
    """(n, r, p) of an scrypt verifier, or None if it is not one."""
    try:
        scheme, n, r, p, _salt, _digest = verifier.split("$")
        return (int(n), int(r), int(p)) if scheme == "scrypt" else None
    except ValueError:
        return None


def dummy_verifier(n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A verifier that no secret matches, with these parameters: checking a secret against it costs
    what checking a real one does (for a user who does not exist, so that both take as long)."""
    return f"scrypt${n}${r}${p}${_b64(secrets.token_bytes(16))}${_b64(secrets.token_bytes(32))}"


# -- the lookup KDF ---------------------------------------------------------------------------------


def make_lookup_kdf(*, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A new lookup KDF: `scrypt$n$r$p$salt` with a random salt."""
    return f"scrypt${n}${r}${p}${_b64(secrets.token_bytes(16))}"


def parse_lookup_kdf(kdf: object) -> tuple[int, int, int, bytes]:
    """(n, r, p, salt) of a lookup KDF; ValueError if it is not one this spooler will run."""
    if not isinstance(kdf, str):
        raise ValueError("a lookup KDF is a text")
    parts = kdf.split("$")
    if len(parts) != 5 or parts[0] != "scrypt":
        raise ValueError("a lookup KDF is scrypt$n$r$p$salt")
    try:
        n, r, p = (int(part) for part in parts[1:4])
        salt = base64.b64decode(parts[4], validate=True)
    except (ValueError, binascii.Error):
        raise ValueError("a lookup KDF is scrypt$n$r$p$salt (numbers, base64)") from None
    if n < 2 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16 or 128 * n * r > SCRYPT_MAX_MEMORY:
        raise ValueError(f"scrypt parameters n={n} r={r} p={p} are out of range")
    if not 8 <= len(salt) <= 64:
        raise ValueError("a lookup KDF's salt is 8 to 64 bytes")
    return n, r, p, salt


def lookup_digest(secret: str, kdf: str) -> bytes:
    """The lookup KDF of a secret (32 bytes): the same for the same secret on every call."""
    n, r, p, salt = parse_lookup_kdf(kdf)
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32)
