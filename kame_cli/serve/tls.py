"""TLS for `kame serve`: the operator's PEM files, or a self-signed certificate made at start.

The certificate's SHA-256 fingerprint is printed at start, so that a user can check the file they
copy to a client (which trusts it explicitly: `SSL_CERT_FILE=cert.pem kame talk --server wss://...`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from kame_cli.errors import ConfigError


@dataclass(frozen=True)
class Tls:
    """The server's TLS context and the certificate's SHA-256 fingerprint (printed at start)."""

    context: ssl.SSLContext
    fingerprint: str
    cert_path: Path


def load_tls(cert: Path, key: Path) -> Tls:
    """A context from the operator's PEM files; a one-line ConfigError if they do not load."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"--ssl-cert {cert} / --ssl-key {key}: cannot load them ({err})") from err
    return Tls(context, fingerprint(cert.read_bytes()), cert)


def self_signed(directory: Path, host: str) -> Tls:
    """A fresh self-signed certificate for `host` (and localhost, 127.0.0.1), written to `directory`."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kame serve")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(list(dict.fromkeys(names))), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    cert_path, key_path = directory / "kame-serve-cert.pem", directory / "kame-serve-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return load_tls(cert_path, key_path)


def fingerprint(pem: bytes) -> str:
    """SHA-256 of the certificate's DER bytes, as `AB:CD:...` (what browsers and `openssl x509` show)."""
    import hashlib

    der = ssl.PEM_cert_to_DER_cert(pem.decode("ascii"))
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))
