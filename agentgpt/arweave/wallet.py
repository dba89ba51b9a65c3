"""An Arweave wallet: an RSA-4096 key in JWK form (the file the Arweave tools write), signing transactions.

Production mounts the JWK from a Secret and points the client at its path; `Wallet.generate()` makes a
throw-away one for arlocal and tests. The private key never appears in repr, logs or error messages.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from agentgpt.arweave.codec import FormatError, b64url_decode, b64url_encode
from agentgpt.arweave.errors import WalletError

KEY_BITS = 4096
PUBLIC_EXPONENT = 65537
#: Salt length of the RSA-PSS signatures we make (the digest length; arweave-js lets callers choose it).
SALT_LENGTH = 32

_JWK_PRIVATE = ("d", "p", "q", "dp", "dq", "qi")


def _int(jwk: dict[str, Any], name: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise WalletError(f"JWK field {name!r} is missing")
    try:
        return int.from_bytes(b64url_decode(value, name), "big")
    except FormatError as exc:
        raise WalletError(f"JWK field {exc}") from None


def _b64_int(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(size, "big"))


def verify_signature(owner: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is an RSA-PSS (SHA-256, MGF1-SHA-256) signature of `message` by the modulus
    `owner` (exponent 65537). Any salt length is accepted, as arweave-js and the gateways accept it."""
    try:
        key = rsa.RSAPublicNumbers(PUBLIC_EXPONENT, int.from_bytes(owner, "big")).public_key()
        key.verify(
            signature,
            message,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
            hashes.SHA256(),
        )
    except (InvalidSignature, ValueError):
        return False
    return True


class Wallet:
    """An RSA-4096 signing key. `address` is what arlocal's /mint and the GraphQL `owners` filter take."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        numbers = key.private_numbers()
        if key.key_size != KEY_BITS or numbers.public_numbers.e != PUBLIC_EXPONENT:
            raise WalletError(
                f"an Arweave wallet is an RSA-{KEY_BITS} key with exponent {PUBLIC_EXPONENT}; "
                f"got RSA-{key.key_size} with exponent {numbers.public_numbers.e}"
            )
        self._key = key
        self._owner = numbers.public_numbers.n.to_bytes(KEY_BITS // 8, "big")

    # ---------------------------------------------------------------- construction
    @classmethod
    def generate(cls) -> Wallet:
        """A new random wallet (about a second of CPU): for arlocal and tests, never funded on mainnet."""
        return cls(rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=KEY_BITS))

    @classmethod
    def from_jwk(cls, jwk: dict[str, Any]) -> Wallet:
        """A wallet from a parsed JWK (kty RSA with n, e, d, p, q, dp, dq, qi)."""
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA":
            raise WalletError('not an RSA JWK (expected a JSON object with "kty": "RSA")')
        missing = [name for name in ("n", "e", *_JWK_PRIVATE) if not jwk.get(name)]
        if missing:
            hint = " (this is a public key only)" if "d" in missing else ""
            raise WalletError(f"JWK is missing {', '.join(missing)}{hint}")
        try:
            public = rsa.RSAPublicNumbers(_int(jwk, "e"), _int(jwk, "n"))
            numbers = rsa.RSAPrivateNumbers(
                p=_int(jwk, "p"),
                q=_int(jwk, "q"),
                d=_int(jwk, "d"),
                dmp1=_int(jwk, "dp"),
                dmq1=_int(jwk, "dq"),
                iqmp=_int(jwk, "qi"),
                public_numbers=public,
            )
            key = numbers.private_key()
        except ValueError as exc:
            if isinstance(exc, WalletError):
                raise
            raise WalletError(f"JWK does not hold a valid RSA key: {exc}") from None
        return cls(key)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Wallet:
        """The wallet in the JWK file at `path` (WalletError naming the file if it cannot be used)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise WalletError(f"cannot read the Arweave wallet {os.fspath(path)!r}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise WalletError(f"the Arweave wallet {os.fspath(path)!r} is not a JSON text file") from None
        try:
            jwk = json.loads(text)
        except ValueError:
            raise WalletError(
                f"the Arweave wallet {os.fspath(path)!r} is not JSON (expected a JWK)"
            ) from None
        try:
            return cls.from_jwk(jwk)
        except WalletError as exc:
            raise WalletError(f"the Arweave wallet {os.fspath(path)!r}: {exc}") from None

    # ---------------------------------------------------------------- identity
    @property
    def owner(self) -> bytes:
        """The public modulus, 512 bytes big-endian: a transaction's `owner` field."""
        return self._owner

    @property
    def address(self) -> str:
        """base64url(sha256(owner)), 43 characters."""
        return b64url_encode(hashlib.sha256(self._owner).digest())

    def __repr__(self) -> str:
        return f"Wallet(address={self.address!r})"

    # ---------------------------------------------------------------- use
    def sign(self, message: bytes) -> bytes:
        """RSA-PSS, SHA-256, MGF1-SHA-256, salt length 32, over `message` (a transaction's signature data)."""
        return self._key.sign(
            message,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=SALT_LENGTH),
            hashes.SHA256(),
        )

    def to_jwk(self) -> dict[str, str]:
        """The private JWK, as the Arweave tools write it. Secret."""
        n = self._key.private_numbers()
        return {
            "kty": "RSA",
            "e": _b64_int(n.public_numbers.e),
            "n": b64url_encode(self._owner),
            "d": _b64_int(n.d),
            "p": _b64_int(n.p),
            "q": _b64_int(n.q),
            "dp": _b64_int(n.dmp1),
            "dq": _b64_int(n.dmq1),
            "qi": _b64_int(n.iqmp),
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the JWK to `path`, readable by the owner only (0600), atomically (a reader never sees half
        a key; an existing file is replaced, also when it had wider permissions)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_jwk(), fh)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return target
