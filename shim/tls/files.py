"""HTTPS for scripts that hard-code ``https://APP.infusionsoft.com/api/xmlrpc``.

Some legacy libraries (the PHP iSDK, the ``infusionsoft-api`` packages for Python and Node)
build that URL themselves and offer no way to change it. They keep working with no code change
when, on the machine where they run,

1. a local CA made here is trusted,
2. the hosts file points ``APP.infusionsoft.com`` at keyshim, and
3. keyshim serves HTTPS on port 443 with a server certificate for that name from the CA.

This module writes the files (``init_tls``) and tells the admin how to do the rest
(``instructions``). The X.509 work is in :mod:`shim.tls.ca`; nothing here imports
``cryptography``.

Files in the TLS directory (default ``tls/`` next to the database)::

    ca.pem           the CA certificate: what the scripts' machines trust
    ca-key.pem       the CA key (0600): signs server certificates, never leaves this machine
    server.pem       keyshim's certificate for the app names (signed by the CA)
    server-key.pem   its key (0600): ``shim serve --keyfile``

The CA is made once and then reused: adding a name re-issues only the server certificate, so
machines that already trust the CA keep working. A CA key that exists but cannot be read is
never replaced, because a new CA would silently break every machine that trusts the old one.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from shim.errors import CliError
from shim.files import write_private
from shim.models import KEAP_AUTHORIZE_URL, KEAP_REST_URL, KEAP_TOKEN_URL, KEAP_XMLRPC_URL
from shim.tls.ca import cert_info, check_ca_pair, make_ca, make_server_cert

__all__ = [
    "CA_CERT",
    "CA_DAYS",
    "CA_KEY",
    "DEFAULT_DAYS",
    "SERVER_CERT",
    "SERVER_KEY",
    "TlsFiles",
    "check_server_files",
    "default_dir",
    "init_tls",
    "instructions",
    "normalize_hosts",
    "summary",
]

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
SERVER_CERT = "server.pem"
SERVER_KEY = "server-key.pem"

#: Server certificates: 825 days is the longest Apple platforms accept for TLS server
#: certificates, even from a CA the user added.
DEFAULT_DAYS = 825
#: The CA lives longer than any server certificate it signs (10 years, or ``days`` if more),
#: so re-issuing server certificates never forces re-trusting a new CA.
CA_DAYS = 3650

#: Names keyshim itself uses to reach Keap. Pointing one of them at keyshim would make keyshim
#: call itself (same machine) or cut the scripts' machine off from Keap's sign-in and API.
UPSTREAM_HOSTS = frozenset(
    host
    for url in (KEAP_XMLRPC_URL, KEAP_TOKEN_URL, KEAP_REST_URL, KEAP_AUTHORIZE_URL)
    if (host := urlsplit(url).hostname)
)

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


@dataclass(frozen=True)
class TlsFiles:
    """What ``init_tls`` wrote, and the facts the admin needs about it."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    hosts: tuple[str, ...]
    ca_created: bool
    ca_name: str
    ca_fingerprint: str
    ca_expires: float
    server_expires: float
    #: Names the previous ``server.pem`` covered that the new one does not.
    dropped_hosts: tuple[str, ...] = ()


def default_dir(local_dir: Path) -> Path:
    """``tls/`` in this host's keyshim directory (next to the database file)."""
    return local_dir / "tls"


def normalize_hosts(hosts: list[str] | tuple[str, ...]) -> list[str]:
    """Lower-case, de-duplicated names (or IP addresses) in order; CliError for a bad one."""
    out: list[str] = []
    for raw in hosts:
        host = raw.strip().lower().rstrip(".")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host:
            raise CliError("--host needs a name, e.g. --host ab123.infusionsoft.com")
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            if "*" in host:
                raise CliError(
                    f"--host {raw}: wildcards cannot go in a hosts file; give each app's name "
                    "(--host ab123.infusionsoft.com --host cd456.infusionsoft.com)"
                ) from None
            if "://" in host or "/" in host or ":" in host:
                raise CliError(
                    f"--host {raw}: give the bare name (ab123.infusionsoft.com), "
                    "not a URL or host:port"
                ) from None
            labels = host.split(".")
            if len(host) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(x) for x in labels):
                raise CliError(f"--host {raw}: not a valid host name") from None
            if host in UPSTREAM_HOSTS:
                raise CliError(
                    f"--host {raw}: keyshim itself reaches Keap at this name; pointing it at "
                    "keyshim would cut keyshim (or the scripts' machine) off from Keap. Give "
                    "your app's name, e.g. ab123.infusionsoft.com"
                ) from None
        if host not in out:
            out.append(host)
    if not out:
        raise CliError("give at least one --host, e.g. --host ab123.infusionsoft.com")
    return out


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CliError(
            f"cannot read {what} {path} ({reason}); run as the user who created it (e.g. with "
            f"sudo). To start over with a new CA instead, delete {path.parent / CA_CERT} and "
            f"{path.parent / CA_KEY}; every machine that trusts the old CA must then trust the "
            "new one"
        ) from None


def _existing_ca(directory: Path) -> tuple[bytes, bytes] | None:
    """The CA already in ``directory``, or None if there is none; CliError if it is unusable."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if not cert_path.exists() and not key_path.exists():
        return None
    if not key_path.exists():
        raise CliError(
            f"{cert_path} exists but {key_path} does not; restore the CA key, or delete "
            f"{cert_path} to make a new CA (which every machine must then trust again)"
        )
    key_pem = _read(key_path, "the CA key")
    if not cert_path.exists():
        raise CliError(
            f"{key_path} exists but {cert_path} does not; restore the CA certificate, or "
            f"delete {key_path} to make a new CA (which every machine must then trust again)"
        )
    cert_pem = _read(cert_path, "the CA certificate")
    try:
        check_ca_pair(cert_pem, key_pem)
        info = cert_info(cert_pem)
    except ValueError as exc:
        raise CliError(
            f"{directory}: {exc}; refusing to replace it. Fix the files, or delete {cert_path} "
            f"and {key_path} to make a new CA (which every machine must then trust again)"
        ) from None
    if info.not_after <= time.time() + 86400:
        raise CliError(
            f"the CA in {cert_path} expires {_date(info.not_after)}; delete {cert_path} and "
            f"{key_path} to make a new one, and trust the new one everywhere"
        )
    return cert_pem, key_pem


def init_tls(directory: Path | str, hosts: list[str], days: int = DEFAULT_DAYS) -> TlsFiles:
    """Make (or reuse) the CA in ``directory`` and issue ``server.pem`` for exactly ``hosts``.

    The server certificate covers the names given, no more: pass every name each time. Names
    the previous certificate covered and this one does not are reported in ``dropped_hosts``.
    """
    directory = Path(directory)
    names = normalize_hosts(hosts)
    if days < 1:
        raise CliError("--days must be at least 1")
    directory.mkdir(parents=True, exist_ok=True, mode=0o755)
    paths = {n: directory / n for n in (CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY)}

    existing = _existing_ca(directory)
    if existing is None:
        ca_cert_pem, ca_key_pem = make_ca(
            f"keyshim local CA ({socket.gethostname()[:40] or 'localhost'})",
            days=max(days, CA_DAYS),
        )
        write_private(paths[CA_KEY], ca_key_pem)
        write_private(paths[CA_CERT], ca_cert_pem, mode=0o644)
    else:
        ca_cert_pem, ca_key_pem = existing

    dropped: tuple[str, ...] = ()
    try:
        old = cert_info(paths[SERVER_CERT].read_bytes())
        dropped = tuple(h for h in (*old.dns_names, *old.ip_addresses) if h not in names)
    except (OSError, ValueError):
        pass  # no previous (readable) server certificate: nothing to compare

    try:
        server_pem, server_key_pem = make_server_cert(ca_cert_pem, ca_key_pem, names, days=days)
    except ValueError as exc:
        raise CliError(f"cannot issue the server certificate: {exc}") from None
    write_private(paths[SERVER_KEY], server_key_pem)
    write_private(paths[SERVER_CERT], server_pem, mode=0o644)

    ca = cert_info(ca_cert_pem)
    return TlsFiles(
        directory=directory,
        ca_cert=paths[CA_CERT],
        ca_key=paths[CA_KEY],
        server_cert=paths[SERVER_CERT],
        server_key=paths[SERVER_KEY],
        hosts=tuple(names),
        ca_created=existing is None,
        ca_name=ca.common_name,
        ca_fingerprint=ca.sha256,
        ca_expires=ca.not_after,
        server_expires=cert_info(server_pem).not_after,
        dropped_hosts=dropped,
    )


def check_server_files(certfile: str | None, keyfile: str | None) -> None:
    """CliError (one line) unless both or neither are given and they load as a pair."""
    if (certfile is None) != (keyfile is None):
        raise CliError(
            "give --certfile and --keyfile together (SHIM_CERTFILE and SHIM_KEYFILE), "
            "or neither for plain HTTP"
        )
    if certfile is None or keyfile is None:
        return
    for flag, path in (("--certfile", certfile), ("--keyfile", keyfile)):
        if not Path(path).is_file():
            raise CliError(f"{flag}: no such file: {path} (make them with: shim tls init)")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        raise CliError(
            f"--certfile {certfile} and --keyfile {keyfile} do not load as a certificate and "
            f"its key ({exc.reason or exc})"
        ) from None
    except OSError as exc:
        raise CliError(f"cannot read {certfile} or {keyfile}: {exc.strerror or exc}") from None


def _date(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ts))


def summary(files: TlsFiles) -> str:
    """The files written, one per line, with what each is for."""
    ca_state = "new" if files.ca_created else "existing, reused"
    lines = [
        f"TLS files in {files.directory}:",
        f"  {CA_CERT:<15} CA certificate ({ca_state}): trust it where the scripts run",
        f"  {CA_KEY:<15} CA key (0600): keep it here; never copy it anywhere",
        f"  {SERVER_CERT:<15} keyshim's certificate for {', '.join(files.hosts)}, valid until "
        f"{_date(files.server_expires)}",
        f"  {SERVER_KEY:<15} its key (0600): read by shim serve",
        f"CA: {files.ca_name}, valid until {_date(files.ca_expires)}",
        f"CA SHA-256 fingerprint: {files.ca_fingerprint}",
    ]
    if files.dropped_hosts:
        lines.append(
            f"note: the new certificate no longer covers {', '.join(files.dropped_hosts)}; "
            "give every --host each time to keep them"
        )
    return "\n".join(lines)


def instructions(files: TlsFiles, hosts: list[str] | tuple[str, ...], port: int = 443) -> str:
    """Step by step: trust the CA, the hosts file, serve on 443, check. Plain text."""
    ca, cert, key = files.ca_cert, files.server_cert, files.server_key
    names = [h for h in hosts if not _is_ip(h)]
    example = names[0] if names else "ab123.infusionsoft.com"

    def serve(on: int) -> str:
        return f"shim serve --host 127.0.0.1 --port {on} --certfile {cert} --keyfile {key}"

    out = [
        "Next steps, on the machine where the legacy scripts run:",
        "",
        "1. Trust the CA there, system-wide (copy ca.pem over first if keyshim runs elsewhere):",
        f"     Debian/Ubuntu: sudo cp {ca} /usr/local/share/ca-certificates/keyshim.crt"
        " && sudo update-ca-certificates",
        f"     RHEL/Fedora:   sudo cp {ca} /etc/pki/ca-trust/source/anchors/keyshim.pem"
        " && sudo update-ca-trust",
        "     macOS:         sudo security add-trusted-cert -d -r trustRoot"
        f" -k /Library/Keychains/System.keychain {ca}",
        "   Runtimes that bring their own CA list need it too. Their settings REPLACE the",
        "   default list, so point them at a bundle that has the public CAs plus this one:",
        "   after step 1 that is /etc/ssl/certs/ca-certificates.crt (Debian/Ubuntu) or",
        "   /etc/pki/tls/certs/ca-bundle.crt (RHEL). BUNDLE below means that file.",
        "     PHP:     php.ini: curl.cainfo = BUNDLE and openssl.cafile = BUNDLE",
        "              The legacy iSDK ignores both: it calls setCaCertificate() with the",
        "              infusionsoft.pem next to isdk.php. Add the CA to that file instead:",
        f"              cat {ca} >> /path/to/isdk/infusionsoft.pem",
        "     Python:  SSL_CERT_FILE=BUNDLE (requests/certifi: REQUESTS_CA_BUNDLE=BUNDLE),",
        f'              or in code: ssl.create_default_context(cafile="{ca}")',
        f"     Node.js: NODE_EXTRA_CA_CERTS={ca}  (adds to Node's list; no bundle needed)",
        "   The file must be readable by the user the scripts run as (copy it if needed).",
        "",
        "2. Point each name at keyshim in /etc/hosts"
        r" (Windows: C:\Windows\System32\drivers\etc\hosts):",
        *(f"     127.0.0.1 {name}" for name in names or [example]),
        "   Only on the machines where the scripts run: anything else on such a machine that",
        "   opens those names (a browser, too) reaches keyshim instead of Keap. If keyshim runs",
        "   on another machine, use its address here and serve with --host on that address.",
        "   keyshim itself reaches Keap at api.infusionsoft.com, a different name, so this",
        "   entry does not affect it even on the same machine. Never add api.infusionsoft.com.",
        "",
    ]
    if port == 443:
        out += [
            "3. Serve HTTPS on port 443 (the port the hard-coded https:// URL implies):",
            f"     {serve(443)}",
            "   Port 443 needs root, or the right to bind low ports: in a systemd unit",
            "   AmbientCapabilities=CAP_NET_BIND_SERVICE, or, for every script that interpreter",
            "   runs: sudo setcap cap_net_bind_service=+ep"
            ' "$(readlink -f "$(command -v python3)")"',
            "   Or serve on a high port and redirect local connections for port 443 to it:",
            f"     {serve(8443)}",
            "     sudo iptables -t nat -A OUTPUT -p tcp -d 127.0.0.1 --dport 443"
            " -j REDIRECT --to-ports 8443",
        ]
    else:
        out += [
            f"3. Serve HTTPS on port {port} and redirect local connections for port 443 to it",
            "   (the hard-coded https:// URL always uses port 443):",
            f"     {serve(port)}",
            "     sudo iptables -t nat -A OUTPUT -p tcp -d 127.0.0.1 --dport 443"
            f" -j REDIRECT --to-ports {port}",
            "   Or serve on 443 directly: that needs root, or AmbientCapabilities=",
            "   CAP_NET_BIND_SERVICE in a systemd unit.",
        ]
    out += [
        "   The redirect matches only 127.0.0.1, so keyshim's own connections to Keap are",
        "   untouched (make the rule persistent with your firewall's tooling). The user",
        "   running shim serve must be able to read the key file.",
        "",
        "4. Check from the scripts' machine (no -k: the certificate must verify):",
        f"     curl -sS https://{example}/api/xmlrpc -H 'Content-Type: text/xml' --data"
        " '<methodCall><methodName>DataService.echo</methodName><params><param><value>"
        "tls ok</value></param></params></methodCall>'",
        "   keyshim answers this one-parameter echo itself: a methodResponse with 'tls ok'.",
        "   Scripts keep their URL; only their API key becomes a keyshim key (shim key issue).",
    ]
    return "\n".join(out)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
