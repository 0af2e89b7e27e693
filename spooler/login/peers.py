"""Who this spooler is and which spoolers it trusts: its own key pair (STATE/keys/peer.key, 0600, made on
first start) and the peers an admin enrolled by public key (STATE/keys/peers.json, `spooler peers add`).

The key pair is an Ed25519 signing key (its public half, `ed25519:BASE64`, is what admins enroll on the
other spoolers) and an X25519 key for the sealing of share messages, certified by a signature of the
Ed25519 key (so admins handle one key). Both files are replaced atomically, mode 0600, in the 0700 keys
folder, like the login key file.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from spooler.login.keys import KeyFileError
from spooler.model import SpoolerError
from spooler.signing import SignatureError, canonical_key, parse_public_key, public_key_text
from spooler.store.spoolfiles import write_private_file

PEER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_PEERS = 256
#: What the Ed25519 key signs to certify the X25519 sealing key.
KX_DOMAIN = b"spooler-share/v2 kx\0"


class PeerError(SpoolerError):
    """A peer that cannot be enrolled or removed (the message says why)."""


def _private_folder(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)


def _raw_private(key: Ed25519PrivateKey | X25519PrivateKey) -> str:
    return base64.b64encode(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())).decode("ascii")


def _raw_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


@dataclass(frozen=True)
class PeerIdentity:
    """This spooler's key pair: `key` is the public key text its peers enroll."""

    signing: Ed25519PrivateKey
    exchange: X25519PrivateKey

    @property
    def key(self) -> str:
        return public_key_text(self.signing)

    @property
    def exchange_public(self) -> bytes:
        return _raw_public(self.exchange)

    def certificate(self) -> dict[str, str]:
        """The public keys and the signature binding the X25519 key to the Ed25519 one (sent in the clear)."""
        kx = self.exchange_public
        return {"key": self.key, "kx": base64.b64encode(kx).decode("ascii"),
                "sig": base64.b64encode(self.signing.sign(KX_DOMAIN + kx)).decode("ascii")}  # fmt: skip

    @classmethod
    def generate(cls) -> PeerIdentity:
        return cls(Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> PeerIdentity:
        try:
            raw = json.loads(path.read_text(encoding="ascii"))
            if not isinstance(raw, dict) or raw.get("version") != 1:
                raise ValueError("not a peer key file")
            signing = Ed25519PrivateKey.from_private_bytes(base64.b64decode(raw["ed25519"], validate=True))
            exchange = X25519PrivateKey.from_private_bytes(base64.b64decode(raw["x25519"], validate=True))
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as error:
            raise KeyFileError(f"{path} is not a usable peer key file: {error}") from None
        return cls(signing, exchange)

    @classmethod
    def open_or_create(cls, path: Path) -> PeerIdentity:
        """The key pair at `path`; a new one (and its 0700 folder) the first time."""
        try:
            identity = cls.load(path)
        except FileNotFoundError:
            _private_folder(path)
            identity = cls.generate()
            body = {"version": 1, "ed25519": _raw_private(identity.signing), "x25519": _raw_private(identity.exchange)}
            write_private_file(path, json.dumps(body).encode("ascii"))
            return identity
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o600)
        return identity


def open_certificate(raw: Any) -> tuple[str, Ed25519PublicKey, bytes]:
    """(key text, Ed25519 key, X25519 public bytes) of another spooler's certificate, its signature
    checked; SignatureError if it does not hold together."""
    if not isinstance(raw, dict):
        raise SignatureError("expected {\"key\", \"kx\", \"sig\"}")
    public = parse_public_key(raw.get("key"))
    try:
        kx = base64.b64decode(str(raw.get("kx")), validate=True)
        signature = base64.b64decode(str(raw.get("sig")), validate=True)
        if len(kx) != 32:
            raise ValueError("an X25519 key is 32 bytes")
        public.verify(signature, KX_DOMAIN + kx)
    except Exception:  # noqa: BLE001 - binascii, ValueError, InvalidSignature: all "does not verify"
        raise SignatureError("the peer's sealing key is not signed by its key") from None
    return public_key_text(public), public, kx


@dataclass(frozen=True)
class Peer:
    name: str
    key: str  # ed25519:BASE64
    address: str | None = None  # "host:port" of its share endpoint, if this spooler should push and pull there

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "address": self.address}


def check_address(address: Any) -> str:
    host, _, port = address.rpartition(":") if isinstance(address, str) else ("", "", "")
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536 or len(address) > 300:
        raise PeerError(f"expected an address such as 192.0.2.11:8640, got {address!r}")
    return str(address)


class EnrolledPeers:
    """The enrolled peers by name (STATE/keys/peers.json); changed only through `add` and `remove`,
    which write the file before they return. Lookups by key are what the share layer asks."""

    def __init__(self, peers: list[Peer], path: Path | None = None) -> None:
        self.path = path
        self._by_name = {peer.name: peer for peer in peers}
        self._by_key = {peer.key: peer for peer in peers}

    @classmethod
    def load(cls, path: Path) -> EnrolledPeers:
        """The enrolled peers; none when the file does not exist yet."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls([], path)
        except (OSError, ValueError, UnicodeDecodeError) as error:
            raise KeyFileError(f"cannot read the enrolled peers {path}: {error}") from None
        if not isinstance(raw, dict) or raw.get("version") != 1 or not isinstance(raw.get("peers"), list):
            raise KeyFileError(f"{path} is not a file of enrolled peers")
        peers = []
        for item in raw["peers"]:
            try:
                peers.append(make_peer(item.get("name"), item.get("key"), item.get("address")))
            except (PeerError, SignatureError, AttributeError) as error:
                raise KeyFileError(f"{path}: {error}") from None
        return cls(peers, path)

    def __iter__(self) -> Iterator[Peer]:
        return iter(sorted(self._by_name.values(), key=lambda peer: peer.name))

    def __len__(self) -> int:
        return len(self._by_name)

    def by_key(self, key: str) -> Peer | None:
        return self._by_key.get(key)

    def is_enrolled(self, key: str) -> bool:
        return key in self._by_key

    def addresses(self) -> list[str]:
        return [peer.address for peer in self if peer.address]

    def add(self, peer: Peer, *, own_key: str | None = None) -> None:
        if own_key is not None and peer.key == own_key:
            raise PeerError("that is this spooler's own key (`spooler peers self`), not a peer's")
        other = self._by_key.get(peer.key)
        if other is not None and other.name != peer.name:
            raise PeerError(f"that key is enrolled already, as {other.name}")
        if peer.name not in self._by_name and len(self._by_name) >= MAX_PEERS:
            raise PeerError(f"at most {MAX_PEERS} peers can be enrolled")
        old = self._by_name.get(peer.name)
        if old is not None:
            del self._by_key[old.key]
        self._by_name[peer.name] = peer
        self._by_key[peer.key] = peer
        self._save()

    def remove(self, name: str) -> Peer:
        """Remove a peer by name (or by key); its entries stop counting as soon as this returns."""
        peer = self._by_name.get(name) or self._by_key.get(name)
        if peer is None:
            raise PeerError(f"no enrolled peer {name!r} (see `spooler peers list`)")
        del self._by_name[peer.name]
        del self._by_key[peer.key]
        self._save()
        return peer

    def _save(self) -> None:
        if self.path is None:
            return
        _private_folder(self.path)
        body = {"version": 1, "peers": [peer.to_dict() for peer in self]}
        write_private_file(self.path, json.dumps(body, indent=1).encode("utf-8"))


def make_peer(name: Any, key: Any, address: Any = None) -> Peer:
    """A peer from what an admin typed; PeerError or SignatureError when something is not right."""
    if not isinstance(name, str) or not PEER_NAME.match(name):
        raise PeerError(f"a peer's name is 1-64 letters, digits, '.', '_' or '-', got {name!r}")
    return Peer(name, canonical_key(key), check_address(address) if address is not None else None)
