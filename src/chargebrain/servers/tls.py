"""TLS for the HTTP API: the server's SSL context from a certificate and key in PEM
files, and a self-signed certificate made once in the data directory.

The only module that imports the `cryptography` library (only to make a certificate
and to explain why one does not load; it is imported when needed, so a server without
TLS never pays for it). Every failure is a `TlsError` with a one-line message naming the
file.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

TLS_DIR = "tls"
CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
VALID_DAYS = 3650


class TlsError(Exception):
    """A certificate or key that cannot be used; the message is one line."""


@dataclass(frozen=True)
class TlsSetup:
    """What the HTTP server serves with."""

    context: ssl.SSLContext
    cert: Path
    fingerprint: str  # SHA-256 of the certificate, hex pairs with colons


def self_signed_paths(data_dir: Path) -> tuple[Path, Path]:
    """Where the self-signed certificate and its key live in a data directory."""
    folder = data_dir / TLS_DIR
    return folder / CERT_NAME, folder / KEY_NAME


def _no_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    raise TlsError("encrypted")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TlsError(f"cannot read the TLS {what} {path}: {exc.strerror or exc}") from None


def server_context(cert: Path, key: Path) -> TlsSetup:
    """An SSL context serving `cert` (PEM, the chain after the certificate) with `key`."""
    cert_pem = _read(cert, "certificate")
    _read(key, "key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except (ssl.SSLError, TlsError) as exc:
        raise TlsError(_why_not(cert, key, exc)) from None
    except OSError as exc:
        raise TlsError(f"cannot load the TLS certificate {cert}: {exc.strerror or exc}"
                       ) from None
    return TlsSetup(context, cert, fingerprint(cert_pem))


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 fingerprint of the first certificate in `cert_pem`, as browsers show it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    digest = x509.load_pem_x509_certificate(cert_pem).fingerprint(hashes.SHA256()).hex()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2)).upper()


def _why_not(cert: Path, key: Path, exc: Exception) -> str:
    """A readable reason why OpenSSL refused the pair."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    except (ValueError, OSError):
        return f"the TLS certificate {cert} is not a PEM certificate"
    try:
        private_key = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except TypeError:
        return f"the TLS key {key} is encrypted; give it without a passphrase"
    except (ValueError, OSError, UnsupportedAlgorithm):
        return f"the TLS key {key} is not a PEM private key"
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if (private_key.public_key().public_bytes(encoding, public)
            != certificate.public_key().public_bytes(encoding, public)):
        return f"the TLS key {key} does not belong to the certificate {cert}"
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"cannot use the TLS certificate {cert} with the key {key}: {reason}"


def ensure_self_signed(data_dir: Path, names: Iterable[str] = ()) -> tuple[Path, Path]:
    """The self-signed certificate and key of a data directory, made if missing or
    expired. `names` are host names or addresses the certificate is also made for
    (besides localhost, the machine's name and the loopback addresses)."""
    cert, key = self_signed_paths(data_dir)
    if cert.exists() and key.exists() and not _expired(cert):
        return cert, key
    cert_pem, key_pem = _make_self_signed(_subject_names(names))
    try:
        cert.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_private(key, key_pem)
        _write_private(cert, cert_pem)
    except OSError as exc:
        raise TlsError(f"cannot write the self-signed certificate to {cert.parent}: "
                       f"{exc.strerror or exc}") from None
    return cert, key


def _expired(cert: Path) -> bool:
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    except (ValueError, OSError):
        return False  # reported when it is loaded
    return certificate.not_valid_after_utc <= datetime.datetime.now(datetime.UTC)


def _subject_names(extra: Iterable[str]) -> list[str]:
    """localhost, the machine's name and addresses, the loopback addresses, `extra`."""
    host = socket.gethostname()
    names = ["localhost", host, "127.0.0.1", "::1", *extra, *_own_addresses(host)]
    out: list[str] = []
    for name in names:
        name = name.strip("[]")
        if name and name not in out and name not in ("0.0.0.0", "::"):
            out.append(name)
    return out


def _own_addresses(host: str) -> list[str]:
    """The addresses the machine's name resolves to, and the one it would reach the
    network from (a UDP socket's connect sends nothing)."""
    found: list[str] = []
    with contextlib.suppress(OSError):
        found.extend(socket.gethostbyname_ex(host)[2])
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET,
                                                     socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: never answered, never sent to
        found.append(str(probe.getsockname()[0]))
    return found


def _make_self_signed(names: list[str]) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM): an ECDSA P-256 key and a certificate for `names`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, f"chargebrain {names[1]}"[:64]),
    ])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` readable by the owner only, replacing `path` at once."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
