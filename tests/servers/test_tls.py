"""The HTTPS certificate: made once, kept, and every unusable file named in one line."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from chargebrain.servers.tls import TlsError, ensure_self_signed, server_context


def test_the_self_signed_certificate_is_made_once(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(tmp_path, ["chargebrain.lan", "0.0.0.0"])
    assert (cert, key) == (tmp_path / "tls" / "cert.pem", tmp_path / "tls" / "key.pem")
    assert key.stat().st_mode & 0o077 == 0
    first = server_context(cert, key).fingerprint
    assert ensure_self_signed(tmp_path) == (cert, key)
    assert server_context(cert, key).fingerprint == first
    assert len(first.split(":")) == 32
    names = x509.load_pem_x509_certificate(cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert {"localhost", "chargebrain.lan"} <= set(names.get_values_for_type(x509.DNSName))
    addresses = set(names.get_values_for_type(x509.IPAddress))
    assert ipaddress.ip_address("127.0.0.1") in addresses
    assert ipaddress.ip_address("0.0.0.0") not in addresses


def test_an_encrypted_key_is_refused_without_a_prompt(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(tmp_path / "a")
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(TlsError, match=r"encrypted\.pem is encrypted"):
        server_context(cert, encrypted)


def test_unusable_files_are_named(tmp_path: Path) -> None:
    cert, key = ensure_self_signed(tmp_path / "a")
    _, other_key = ensure_self_signed(tmp_path / "b")
    junk = tmp_path / "junk.pem"
    junk.write_text("junk")
    cases = [
        (junk, key, "junk.pem is not a PEM certificate"),
        (cert, junk, "junk.pem is not a PEM private key"),
        (cert, cert, "cert.pem is not a PEM private key"),
        (cert, other_key, "does not belong to the certificate"),
        (tmp_path / "none.pem", key, "cannot read the TLS certificate"),
        (cert, tmp_path, "cannot read the TLS key"),
    ]
    for cert_file, key_file, message in cases:
        with pytest.raises(TlsError, match=re.escape(message)) as caught:
            server_context(cert_file, key_file)
        assert "\n" not in str(caught.value)
