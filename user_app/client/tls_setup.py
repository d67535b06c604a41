"""``ringfs up --tls``: a private CA and one certificate for the local services, made with ``cryptography``.

Kept in ``<data dir>/tls/``: ``ca.pem`` (the CA certificate clients trust: ``TLS_CA_FILE`` for the services,
``--ca-file`` / ``RINGFS_CA_FILE`` for the CLI, found there by default), ``ca.key``, and ``server.pem`` /
``server.key`` (``TLS_CERT_FILE`` / ``TLS_KEY_FILE`` of every service). The certificate names
``localhost``, ``127.0.0.1`` and ``::1``, plus the host given to ``--host``. Keys are P-256 ECDSA and mode
0600; the CA lives 10 years, the certificate 1 year (made again when it is within 30 days of expiry).
For a real deployment use certificates from your own CA (README "Security", "TLS").
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from user_app.client.credentials import write_private

CA_DAYS = 3650
CERT_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "RingFS local cluster"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _make_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("RingFS local CA")).issuer_name(_name("RingFS local CA"))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    write_private(folder / "ca.key", _key_pem(key))
    (folder / "ca.pem").write_text(cert.public_bytes(serialization.Encoding.PEM).decode())
    return cert, key


def _alt_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def ensure_local_tls(data_dir: Path, extra_hosts: list[str] = ()) -> TlsFiles:
    """The CA and server certificate under ``data_dir/tls``, made (or renewed) when missing or expiring."""
    folder = Path(data_dir) / "tls"
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    if files.ca.exists() and (folder / "ca.key").exists():
        ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
        ca_key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), password=None)
    else:
        ca, ca_key = _make_ca(folder)
    now = dt.datetime.now(dt.timezone.utc)
    hosts = ["localhost", "127.0.0.1", "::1", *[h for h in extra_hosts if h not in ("0.0.0.0", "::")]]
    if files.cert.exists() and files.key.exists():
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        if (cert.not_valid_after_utc - now > RENEW_BEFORE and cert.issuer == ca.subject
                and set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) >= set(_alt_names(hosts))):
            return files
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("RingFS local services")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CERT_DAYS))
            .add_extension(x509.SubjectAlternativeName(_alt_names(hosts)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH,
                                                  x509.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_private(files.key, _key_pem(key))
    files.cert.write_text(cert.public_bytes(serialization.Encoding.PEM).decode())
    return files
