"""Signed statements (Ed25519): the format the central server signs login grants and revocations in,
and spoolers sign the entries they share. Pure: no I/O, no clock.

A statement is `{"payload": BASE64, "signature": BASE64}`: the payload is the UTF-8 JSON of an object,
the signature an Ed25519 signature of `DOMAIN \\0 payload-bytes`. The verifier checks the exact bytes
it received and only then parses them, so no canonical JSON form is needed; the domain ("spooler-grant/v1",
...) keeps a signature made for one purpose from being passed off as another. Public keys are written
`ed25519:BASE64` (the 32 raw bytes).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from spooler.model import SpoolerError

KEY_PREFIX = "ed25519:"
#: A statement's payload is small (one credential or revocation); anything larger is refused unread.
MAX_PAYLOAD = 16 * 1024

GRANT = "spooler-grant/v1"  # the central server: a login it accepted (user, credential, verifier, devices)
REVOCATION = "spooler-revocation/v1"  # the central server: a credential withdrawn
PEER_RECORD = "spooler-peer-record/v1"  # a spooler: a credential or revocation it shares with its peers

#: A statement as stored: (payload, signature), both base64 text exactly as received.
Statement = tuple[str, str]


class SignatureError(SpoolerError):
    """A statement or key that is malformed, or a signature that does not verify."""


def public_key_text(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return KEY_PREFIX + base64.b64encode(public.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode("ascii")


def parse_public_key(text: Any) -> Ed25519PublicKey:
    """The key of an `ed25519:BASE64` text; SignatureError if it is not one."""
    if not isinstance(text, str) or not text.startswith(KEY_PREFIX) or len(text) > 100:
        raise SignatureError("expected a public key such as ed25519:BASE64 (44 base64 characters)")
    try:
        raw = base64.b64decode(text[len(KEY_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("the public key is not base64 (expected ed25519:BASE64)") from None
    if len(raw) != 32:
        raise SignatureError("an Ed25519 public key is 32 bytes (ed25519: and 44 base64 characters)")
    return Ed25519PublicKey.from_public_bytes(raw)


def canonical_key(text: Any) -> str:
    """The key text in its one spelling (base64 re-encoded), so that equal keys compare equal."""
    return public_key_text(parse_public_key(text))


def sign(private: Ed25519PrivateKey, domain: str, payload: dict[str, Any]) -> Statement:
    data = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode("utf-8")
    signature = private.sign(domain.encode("ascii") + b"\0" + data)
    return base64.b64encode(data).decode("ascii"), base64.b64encode(signature).decode("ascii")


def as_json(statement: Statement) -> dict[str, str]:
    return {"payload": statement[0], "signature": statement[1]}


def from_json(raw: Any) -> Statement:
    """A statement from its JSON form; SignatureError if it is not one (nothing is verified here)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("payload"), str) or not isinstance(raw.get("signature"), str):
        raise SignatureError("expected a signed statement {\"payload\": ..., \"signature\": ...}")
    if len(raw["payload"]) > MAX_PAYLOAD * 4 // 3 + 4 or len(raw["signature"]) > 100:
        raise SignatureError("the signed statement is too large")
    return raw["payload"], raw["signature"]


def unverified_payload(statement: Statement) -> dict[str, Any]:
    """The payload without checking the signature: only to learn who signed it (its "issuer")."""
    return _decode(statement)[1]


def verify(public: Ed25519PublicKey, domain: str, statement: Statement) -> dict[str, Any]:
    """The payload of a statement signed by `public` for `domain`; SignatureError otherwise."""
    data, payload = _decode(statement)
    try:
        signature = base64.b64decode(statement[1], validate=True)
        public.verify(signature, domain.encode("ascii") + b"\0" + data)
    except (binascii.Error, ValueError, InvalidSignature):
        raise SignatureError(f"the signature does not verify ({domain})") from None
    return payload


def _decode(statement: Statement) -> tuple[bytes, dict[str, Any]]:
    try:
        data = base64.b64decode(statement[0], validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("the statement's payload is not base64") from None
    if len(data) > MAX_PAYLOAD:
        raise SignatureError("the statement's payload is too large")
    try:
        payload = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise SignatureError("the statement's payload is not JSON") from None
    if not isinstance(payload, dict):
        raise SignatureError("the statement's payload is not an object")
    return data, payload
