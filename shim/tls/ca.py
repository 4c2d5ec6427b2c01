"""The local CA for ``shim tls init``: X.509 certificates, keys and the facts shown about them.

A local CA and a server certificate for ``APP.infusionsoft.com`` let scripts that hard-code
that URL reach keyshim over HTTPS unchanged. Keys are EC P-256, signatures ECDSA-SHA256,
everything PEM; file handling lives in :mod:`shim.tls.files`.

One of the two modules that import ``cryptography``; the other is :mod:`shim.store.secrets`
(secrets at rest). Nothing else does.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertInfo", "cert_info", "check_ca_pair", "make_ca", "make_server_cert"]

#: Certificates start this far in the past, so a machine whose clock is a little behind the
#: one that issued them does not reject them as "not yet valid".
_BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class CertInfo:
    """What ``shim tls`` needs to know about a PEM certificate, without importing cryptography."""

    common_name: str
    issuer: str
    not_before: float
    not_after: float
    is_ca: bool
    path_length: int | None
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    server_auth: bool
    sha256: str  # "AB:CD:..." as shown by `openssl x509 -fingerprint -sha256`


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _validity(days: int) -> tuple[datetime.datetime, datetime.datetime]:
    if days < 1:
        raise ValueError("a certificate must be valid for at least 1 day")
    now = datetime.datetime.now(datetime.timezone.utc)
    return now - _BACKDATE, now + datetime.timedelta(days=days)


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def make_ca(common_name: str, *, days: int) -> tuple[bytes, bytes]:
    """A self-signed CA for this machine's keyshim: ``(cert PEM, key PEM)``.

    ``common_name`` is used as given (``shim tls init`` passes ``keyshim local CA (<host>)``).
    basicConstraints CA:true with pathlen 0 (it signs server certificates only, never another
    CA) and keyUsage keyCertSign + cRLSign, both critical.
    """
    if not common_name or len(common_name) > 64:
        raise ValueError("the CA common name must be 1 to 64 characters")
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "keyshim"),
        ]
    )
    not_before, not_after = _validity(days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _load_ca(
    ca_cert_pem: bytes, ca_key_pem: bytes
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    try:
        ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    except ValueError:
        raise ValueError("the CA certificate is not a PEM certificate") from None
    try:
        ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    except (ValueError, TypeError):
        # TypeError: the key is encrypted. Never echo the key material itself.
        raise ValueError("the CA key is not an unencrypted PEM private key") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("the CA key must be an EC or RSA key")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if ca_key.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) != ca_cert.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise ValueError("the CA key does not belong to the CA certificate")
    try:
        constraints = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise ValueError("the CA certificate is not a CA (basicConstraints CA:false or missing)")
    return ca_cert, ca_key


def make_server_cert(
    ca_cert_pem: bytes, ca_key_pem: bytes, hosts: list[str], *, days: int
) -> tuple[bytes, bytes]:
    """A server certificate for ``hosts`` signed by the CA: ``(cert PEM, key PEM)``.

    Every host becomes a subjectAltName: a DNS name, or an IP address if it parses as one.
    extendedKeyUsage serverAuth, basicConstraints CA:false. The certificate never outlives
    the CA (its notAfter is clipped to the CA's). Raises ValueError for an unusable CA pair.
    """
    if not hosts:
        raise ValueError("a server certificate needs at least one host name")
    ca_cert, ca_key = _load_ca(ca_cert_pem, ca_key_pem)
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not host.isascii() or not host:
                raise ValueError(f"not an ASCII host name: {host!r}") from None
            sans.append(x509.DNSName(host))
    key = _new_key()
    not_before, not_after = _validity(days)
    not_after = min(not_after, ca_cert.not_valid_after_utc)
    if not_after <= not_before + _BACKDATE:
        raise ValueError("the CA certificate has expired")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def check_ca_pair(ca_cert_pem: bytes, ca_key_pem: bytes) -> None:
    """Raise ValueError unless the key belongs to the certificate and the certificate is a CA."""
    _load_ca(ca_cert_pem, ca_key_pem)


def cert_info(cert_pem: bytes) -> CertInfo:
    """The facts ``shim tls`` shows and checks; ValueError if ``cert_pem`` is not a certificate."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise ValueError("not a PEM certificate") from None
    ext = cert.extensions
    try:
        bc = ext.get_extension_for_class(x509.BasicConstraints).value
        is_ca, path_length = bc.ca, bc.path_length
    except x509.ExtensionNotFound:
        is_ca, path_length = False, None
    try:
        san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        dns, ips = (), ()
    try:
        eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
        server_auth = ExtendedKeyUsageOID.SERVER_AUTH in eku
    except x509.ExtensionNotFound:
        server_auth = False
    return CertInfo(
        common_name=_cn(cert.subject),
        issuer=_cn(cert.issuer),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        is_ca=is_ca,
        path_length=path_length,
        dns_names=dns,
        ip_addresses=ips,
        server_auth=server_auth,
        sha256=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
    )
