"""mTLS service identities: the files a service is given, the gRPC credentials made from them, the caller's
identity read from its verified client certificate, and a throwaway CA for the local stack and the tests.

With AGENTGPT_TLS_CA_FILE, AGENTGPT_TLS_CERT_FILE and AGENTGPT_TLS_KEY_FILE set (PEM paths), a service
listens with TLS and *requires* a client certificate signed by that CA; its clients present its own
certificate and verify the server against the same CA. A caller's identity is its certificate's subject
common name (else its first DNS SAN): `session`, `executor-N`, `recovery-oracle`, `indexer`, or a
non-service identity such as `cli` (the owner's CLI, which authenticates owners by their EIP-712 signatures
and has no service rights) or `operator` (operator commands such as `agentgpt session restore`). What each
identity may call is `agentgpt.auth.RPC_CALLERS`.

Without a client certificate, or with one from another CA, the TLS handshake fails before gRPC sees the
call: the client gets UNAVAILABLE (the transport could not be established), never an answer. A valid
certificate of the wrong identity gets PERMISSION_DENIED naming the RPC and the identity.

Clients find their credentials in one process-wide place (`use_client_tls`), set once at start by each
service (from its TLS settings), by the CLI (from the local stack's work directory or the same settings)
and by the local stack's supervisor, so no call site has to thread certificates through.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from agentgpt.runtime.config import ConfigError

#: Names a client may dial that are not the server's identity, where the peer's service name is used as
#: the TLS target name instead.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost", "[::1]"})


@dataclass(frozen=True)
class TlsFiles:
    """The PEM files of one identity: the CA that signs every peer, its certificate and its key."""

    ca: Path
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes, bytes]:
        try:
            return self.ca.read_bytes(), self.key.read_bytes(), self.cert.read_bytes()
        except OSError as exc:
            raise ConfigError(f"TLS: cannot read {exc.filename} ({exc.strerror})") from None


def files_from(ca: str, cert: str, key: str) -> TlsFiles | None:
    """The TLS files named by the three settings: all set -> TlsFiles, none -> None; some -> ConfigError."""
    given = {"AGENTGPT_TLS_CA_FILE": ca, "AGENTGPT_TLS_CERT_FILE": cert, "AGENTGPT_TLS_KEY_FILE": key}
    if not any(given.values()):
        return None
    missing = [name for name, value in given.items() if not value]
    if missing:
        raise ConfigError(
            f"{', '.join(missing)} not set: mTLS needs all three of AGENTGPT_TLS_CA_FILE, "
            "AGENTGPT_TLS_CERT_FILE and AGENTGPT_TLS_KEY_FILE (or none, for a plaintext loopback stack)"
        )
    files = TlsFiles(Path(ca), Path(cert), Path(key))
    files.read()  # unreadable files are a configuration error at start, not a failed handshake later
    return files


def is_loopback(host: str) -> bool:
    """Whether a listen address reaches this machine only (127.0.0.0/8, ::1, localhost)."""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_header_trust(trust_service_header: bool, host: str) -> None:
    """Header trust (`x-agentgpt-service` taken as identity) is for a loopback-only local stack: refused on
    any listener another machine can reach, where any pod or host could claim to be a service."""
    if trust_service_header and not is_loopback(host):
        raise ConfigError(
            f"AGENTGPT_TRUST_SERVICE_HEADER=true with AGENTGPT_HOST={host!r}: trusting the x-agentgpt-service "
            "header is allowed only on a loopback listener (127.0.0.1, ::1, localhost); configure mTLS "
            "(AGENTGPT_TLS_CA_FILE, AGENTGPT_TLS_CERT_FILE, AGENTGPT_TLS_KEY_FILE) instead"
        )


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """Server credentials that require a client certificate signed by the CA."""
    ca, key, cert = files.read()
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)


def channel_credentials(files: TlsFiles) -> grpc.ChannelCredentials:
    """Client credentials presenting this identity's certificate and verifying the server against the CA."""
    ca, key, cert = files.read()
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


_client_files: TlsFiles | None = None
_client_credentials: grpc.ChannelCredentials | None = None


def use_client_tls(files: TlsFiles | None) -> None:
    """Make every client channel of this process use mTLS with `files` (None: plaintext again). The files
    are read now: a channel made later does not depend on them still being there."""
    global _client_files, _client_credentials
    _client_files = files
    _client_credentials = channel_credentials(files) if files is not None else None


def client_tls() -> TlsFiles | None:
    """The TLS files this process's clients present, if any (`use_client_tls`)."""
    return _client_files


def channel(target: str, peer_name: str = "", files: TlsFiles | None = None) -> aio.Channel:
    """A channel to `target`: mTLS when this process uses TLS (or `files` is given), else plaintext.

    Where `target`'s host is a loopback address and the peer's service name is known, that name is the
    TLS target name (the certificate names the service, not the address it is dialled at)."""
    creds = channel_credentials(files) if files is not None else _client_credentials
    if creds is None:
        return aio.insecure_channel(target)
    options: list[tuple[str, Any]] = []
    host = target.rsplit(":", 1)[0] if ":" in target else target
    if peer_name and host in LOOPBACK_HOSTS:
        options.append(("grpc.ssl_target_name_override", peer_name))
    return aio.secure_channel(target, creds, options=options)


def peer_identity(context: Any) -> str | None:
    """The caller's identity from its verified client certificate: the subject common name, else its first
    DNS SAN; None on a plaintext connection."""
    try:
        auth = context.auth_context()
    except Exception:
        return None
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        values = auth.get(key) or []
        for value in values:
            name = value.decode() if isinstance(value, bytes) else str(value)
            if name:
                return name
    return None


# ---------------------------------------------------------------------------------------- throwaway CA


@dataclass(frozen=True)
class Ca:
    """A certificate authority made for one local stack or test run (never for a deployment)."""

    cert_pem: bytes
    key_pem: bytes
    path: Path  # the CA certificate's PEM file


def write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    path.chmod(0o600)


def make_ca(directory: Path, name: str = "agentgpt-local-ca") -> Ca:
    """A new CA whose certificate is written to `directory`/ca.pem (its key, 0600, to ca.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.pem").write_bytes(cert_pem)
    write_private(directory / "ca.key", key_pem)
    return Ca(cert_pem=cert_pem, key_pem=key_pem, path=directory / "ca.pem")


def issue(ca: Ca, name: str, directory: Path) -> TlsFiles:
    """A certificate of identity `name` (its common name and first DNS SAN; also valid for localhost and
    127.0.0.1) signed by `ca`, for both server and client use: `directory`/NAME.pem and NAME.key (0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [
        x509.DNSName(name),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    return TlsFiles(ca=ca.path, cert=cert_path, key=key_path)


def local_files(directory: Path, name: str) -> TlsFiles | None:
    """The files `issue` wrote for `name` under `directory`, if they are all there."""
    files = TlsFiles(directory / "ca.pem", directory / f"{name}.pem", directory / f"{name}.key")
    return files if all(p.is_file() for p in (files.ca, files.cert, files.key)) else None
