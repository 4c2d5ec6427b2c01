"""``shim tls init`` and HTTPS serving: a script that hard-codes the Keap URL works unchanged.

The certificates are checked the way clients check them: by OpenSSL through Python's ``ssl``
(a TLS handshake in memory, or over a loopback socket), with a client context that trusts only
the CA under test. The end-to-end tests run the simulator, keyshim over HTTPS and an
``xmlrpc.client`` script whose URL is ``https://ab123.infusionsoft.com/...``; the name is
resolved to 127.0.0.1 by patching ``socket.getaddrinfo``, standing in for the hosts-file entry.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shim.cli import cli
from shim.errors import CliError
from shim.serve.app import KeyshimApp
from shim.serve.runtime import build_services
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store.sqlite import SqliteStore
from shim.tls.ca import cert_info, make_ca, make_server_cert
from shim.tls.files import TlsFiles, check_server_files, init_tls, instructions, summary
from tests.support.servers import BackgroundServer
from tests.support.stack import add_oauth_account, issue_key

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
APP = "ab123.infusionsoft.com"
OTHER_APP = "cd456.infusionsoft.com"


# --- helpers ---------------------------------------------------------------------------------


def client_context(cafile: Path) -> ssl.SSLContext:
    """What a careful script uses: verifies the chain and the name, trusts ONLY ``cafile``.

    ``create_default_context(cafile=...)`` loads no system CAs when a cafile is given, so any
    certificate not issued by this CA is rejected.
    """
    return ssl.create_default_context(cafile=str(cafile))


def handshake(files: TlsFiles, cafile: Path, name: str) -> None:
    """A full TLS handshake in memory: keyshim's server.pem against a client trusting cafile."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(files.server_cert, files.server_key)
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context(cafile).wrap_bio(c_in, c_out, server_hostname=name)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client_done = server_done = False
    for _ in range(20):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        if not server_done:
            try:
                server.do_handshake()
                server_done = True
            except ssl.SSLWantReadError:
                pass
        c_in.write(s_out.read())
        if client_done and server_done:
            return
    raise AssertionError("handshake did not finish")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def resolve_app(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``ab123.infusionsoft.com`` → 127.0.0.1, as the hosts-file entry does on a real machine.

    Only these names are mapped; everything else resolves normally, and no lookup of them
    ever leaves the machine. Returns the list of mapped lookups, so tests can prove the client
    really went through the name.
    """
    real = socket.getaddrinfo
    mapped: list[str] = []

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.lower() in (APP, OTHER_APP):
            mapped.append(host)
            return real("127.0.0.1", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return mapped


@pytest.fixture
def sim_server() -> Iterator[tuple[Simulator, BackgroundServer]]:
    sim = Simulator(SimConfig())
    with BackgroundServer(sim.app) as server:
        yield sim, server


# --- crypto.py: the certificates -----------------------------------------------------------


def test_ca_and_server_certificate_facts() -> None:
    ca_pem, ca_key = make_ca("keyshim local CA (web1)", days=3650)
    ca = cert_info(ca_pem)
    assert ca.common_name == ca.issuer == "keyshim local CA (web1)"
    assert ca.is_ca and ca.path_length == 0 and not ca.server_auth
    assert b"BEGIN PRIVATE KEY" in ca_key

    server_pem, server_key = make_server_cert(ca_pem, ca_key, [APP, "127.0.0.1"], days=825)
    info = cert_info(server_pem)
    assert info.issuer == "keyshim local CA (web1)" and info.common_name == APP
    assert not info.is_ca and info.server_auth
    assert info.dns_names == (APP,) and info.ip_addresses == ("127.0.0.1",)
    assert 824 * 86400 < info.not_after - time.time() <= 825 * 86400
    assert info.not_before < time.time()  # backdated a little for clock skew
    assert server_key != ca_key


def test_server_certificate_never_outlives_its_ca() -> None:
    ca_pem, ca_key = make_ca("short CA", days=10)
    server_pem, _ = make_server_cert(ca_pem, ca_key, [APP], days=825)
    assert cert_info(server_pem).not_after == cert_info(ca_pem).not_after


def test_server_certificate_cannot_act_as_a_ca() -> None:
    ca_pem, ca_key = make_ca("CA", days=30)
    server_pem, server_key = make_server_cert(ca_pem, ca_key, [APP], days=30)
    with pytest.raises(ValueError, match="not a CA"):
        make_server_cert(server_pem, server_key, [OTHER_APP], days=30)
    _, other_key = make_ca("other CA", days=30)
    with pytest.raises(ValueError, match="does not belong"):
        make_server_cert(ca_pem, other_key, [APP], days=30)
    with pytest.raises(ValueError):
        make_server_cert(ca_pem, ca_key, [], days=30)


# --- tls.py: files, reuse, refusals --------------------------------------------------------


def test_init_writes_four_files_and_the_server_cert_verifies(tmp_path: Path) -> None:
    files = init_tls(tmp_path / "tls", [APP], 825)
    assert files.ca_created and files.hosts == (APP,)
    for path in (files.ca_cert, files.server_cert):
        assert mode(path) == 0o644, path
    for path in (files.ca_key, files.server_key):
        assert mode(path) == 0o600, path
    assert sorted(p.name for p in files.directory.iterdir()) == [
        "ca-key.pem",
        "ca.pem",
        "server-key.pem",
        "server.pem",
    ]
    handshake(files, files.ca_cert, APP)  # OpenSSL accepts the chain and the name
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(files, files.ca_cert, "ef789.infusionsoft.com")
    assert files.ca_fingerprint == cert_info(files.ca_cert.read_bytes()).sha256


def test_second_init_reuses_the_ca_and_reissues_only_the_server_cert(tmp_path: Path) -> None:
    first = init_tls(tmp_path, [APP], 825)
    ca_pem, ca_key = first.ca_cert.read_bytes(), first.ca_key.read_bytes()
    trusted = tmp_path / "trusted-copy.pem"  # what a scripts' machine installed after run 1
    trusted.write_bytes(ca_pem)
    old_server = first.server_cert.read_bytes()

    second = init_tls(tmp_path, [APP, OTHER_APP], 825)
    assert not second.ca_created
    assert second.ca_cert.read_bytes() == ca_pem and second.ca_key.read_bytes() == ca_key
    assert second.server_cert.read_bytes() != old_server
    assert cert_info(second.server_cert.read_bytes()).dns_names == (APP, OTHER_APP)
    for name in (APP, OTHER_APP):  # the CA trusted after the first run covers both
        handshake(second, trusted, name)
    assert mode(second.ca_key) == mode(second.server_key) == 0o600

    third = init_tls(tmp_path, [OTHER_APP], 825)  # forgot APP: said, not silently lost
    assert third.dropped_hosts == (APP,)
    assert "no longer covers ab123.infusionsoft.com" in summary(third)


def test_refuses_to_replace_a_ca_key_it_cannot_use(tmp_path: Path) -> None:
    files = init_tls(tmp_path, [APP], 825)
    ca_pem = files.ca_cert.read_bytes()

    files.ca_key.write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    with pytest.raises(CliError, match="refusing to replace it"):
        init_tls(tmp_path, [APP], 825)
    assert files.ca_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\ngarbage")
    assert files.ca_cert.read_bytes() == ca_pem

    _, other_key = make_ca("someone else's CA", days=30)  # a valid key, but not this CA's
    files.ca_key.write_bytes(other_key)
    with pytest.raises(CliError, match="does not belong"):
        init_tls(tmp_path, [APP], 825)
    assert files.ca_key.read_bytes() == other_key

    files.ca_key.unlink()
    with pytest.raises(CliError, match=r"ca-key\.pem does not"):
        init_tls(tmp_path, [APP], 825)
    assert files.ca_cert.read_bytes() == ca_pem


_INIT_TLS = """
import sys
from shim.errors import CliError
from shim.tls.files import init_tls
try:
    init_tls(sys.argv[1], sys.argv[2:], 825)
except CliError as exc:
    print(exc)
    sys.exit(3)
"""


def test_refuses_to_replace_an_unreadable_ca_key(tmp_path: Path) -> None:
    """A CA key keyshim cannot read (mode 000, another user's) stops init: never a new CA.

    Root reads a mode-000 file anyway, and CI runs as root: there the second init runs in a
    child that has lost root's power to bypass file modes (CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH, dropped with setpriv), as an ordinary user would."""
    files = init_tls(tmp_path, [APP], 825)
    key = files.ca_key.read_bytes()
    files.ca_key.chmod(0)
    try:
        if os.geteuid() != 0:
            with pytest.raises(CliError, match="cannot read the CA key"):
                init_tls(tmp_path, [APP, OTHER_APP], 825)
        else:
            drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
            done = subprocess.run(
                [*drop, sys.executable, "-c", _INIT_TLS, str(tmp_path), APP, OTHER_APP],
                capture_output=True,
                text=True,
                timeout=60,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
            )
            assert done.returncode == 3, done.stdout + done.stderr
            assert "cannot read the CA key" in done.stdout
            assert "Permission denied" in done.stdout
    finally:
        files.ca_key.chmod(0o600)
    assert files.ca_key.read_bytes() == key


@pytest.mark.parametrize(
    ("hosts", "message"),
    [
        (["*.infusionsoft.com"], "wildcards"),
        (["api.infusionsoft.com"], "keyshim itself reaches Keap"),
        (["accounts.infusionsoft.com"], "keyshim itself reaches Keap"),
        (["https://ab123.infusionsoft.com/api/xmlrpc"], "bare name"),
        (["ab123.infusionsoft.com:443"], "bare name"),
        (["ab_123.infusionsoft.com"], "not a valid host name"),
        (["localhost"], "not a valid host name"),
        ([" "], "needs a name"),
        ([], "at least one"),
    ],
)
def test_bad_host_names(tmp_path: Path, hosts: list[str], message: str) -> None:
    with pytest.raises(CliError, match=message):
        init_tls(tmp_path / "tls", hosts, 825)
    assert not (tmp_path / "tls").exists()  # nothing written for a mistake


def test_host_names_are_normalized_and_ips_become_ip_sans(tmp_path: Path) -> None:
    files = init_tls(tmp_path, ["AB123.InfusionSoft.com.", APP, "127.0.0.1", "[::1]"], 30)
    assert files.hosts == (APP, "127.0.0.1", "::1")
    info = cert_info(files.server_cert.read_bytes())
    assert info.dns_names == (APP,) and info.ip_addresses == ("127.0.0.1", "::1")
    handshake(files, files.ca_cert, "127.0.0.1")


def test_instructions_cover_every_step(tmp_path: Path) -> None:
    files = init_tls(tmp_path, [APP, OTHER_APP, "127.0.0.1"], 825)
    text = instructions(files, files.hosts, 443)
    ca = str(files.ca_cert)
    for needle in (
        f"cp {ca} /usr/local/share/ca-certificates/keyshim.crt && sudo update-ca-certificates",
        "update-ca-trust",
        f"security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {ca}",
        "curl.cainfo",
        "openssl.cafile",
        "setCaCertificate",
        f"cat {ca} >> /path/to/isdk/infusionsoft.pem",
        "SSL_CERT_FILE",
        f'ssl.create_default_context(cafile="{ca}")',
        f"NODE_EXTRA_CA_CERTS={ca}",
        f"127.0.0.1 {APP}",
        f"127.0.0.1 {OTHER_APP}",
        "Only on the machines where the scripts run",
        "api.infusionsoft.com, a different name",
        f"shim serve --host 127.0.0.1 --port 443 --certfile {files.server_cert} "
        f"--keyfile {files.server_key}",
        "cap_net_bind_service",
        "--dport 443 -j REDIRECT --to-ports 8443",
        f"curl -sS https://{APP}/api/xmlrpc",
    ):
        assert needle in text, needle
    assert "127.0.0.1 127.0.0.1" not in text  # IP hosts need no hosts-file line
    high = instructions(files, files.hosts, 8443)
    assert "--port 8443" in high and "--dport 443 -j REDIRECT --to-ports 8443" in high


def test_check_server_files(tmp_path: Path) -> None:
    files = init_tls(tmp_path, [APP], 30)
    check_server_files(str(files.server_cert), str(files.server_key))
    check_server_files(None, None)
    with pytest.raises(CliError, match="together"):
        check_server_files(str(files.server_cert), None)
    with pytest.raises(CliError, match="no such file"):
        check_server_files(str(tmp_path / "nope.pem"), str(files.server_key))
    with pytest.raises(CliError, match="do not load"):  # the CA key is not server.pem's key
        check_server_files(str(files.server_cert), str(files.ca_key))


# --- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def shim_cli(tmp_path: Path) -> Any:
    runner = CliRunner()
    env = {"SHIM_DB": str(tmp_path / "data" / "k.db"), "SHIM_SECRET_KEY": ""}

    def invoke(*args: str) -> Any:
        return runner.invoke(cli, list(args), env=env, catch_exceptions=False)

    assert invoke("init").exit_code == 0
    return invoke


def test_cli_tls_init_prints_files_and_instructions(shim_cli: Any, tmp_path: Path) -> None:
    result = shim_cli("tls", "init", "--host", APP)
    assert result.exit_code == 0, result.output
    tls_dir = tmp_path / "data" / "tls"  # default: next to the database
    assert f"TLS files in {tls_dir}" in result.output
    assert "CA certificate (new)" in result.output
    assert f"127.0.0.1 {APP}" in result.output
    assert f"--certfile {tls_dir / 'server.pem'} --keyfile {tls_dir / 'server-key.pem'}" in (
        result.output
    )
    again = shim_cli("tls", "init", "--host", APP, "--host", OTHER_APP, "--port", "8443")
    assert again.exit_code == 0 and "existing, reused" in again.output
    assert "--to-ports 8443" in again.output
    other = tmp_path / "elsewhere"
    assert shim_cli("tls", "init", "--host", APP, "--dir", str(other)).exit_code == 0
    assert (other / "server.pem").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tls", "init", "--host", "api.infusionsoft.com"], "keyshim itself reaches Keap"),
        (["tls", "init"], "Missing option '--host'"),
        (["tls", "init", "--host", APP, "--days", "0"], "--days"),
        (["serve", "--certfile", "x.pem"], "give --certfile and --keyfile together"),
        (["serve", "--certfile", "x.pem", "--keyfile", "y.pem"], "--certfile: no such file"),
    ],
)
def test_cli_mistakes_are_one_line(shim_cli: Any, args: list[str], message: str) -> None:
    result = shim_cli(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_cli_serve_rejects_a_key_that_is_not_the_certificates(
    shim_cli: Any, tmp_path: Path
) -> None:
    files = init_tls(tmp_path / "t", [APP], 30)
    result = shim_cli("serve", "--certfile", str(files.server_cert), "--keyfile", str(files.ca_key))
    assert result.exit_code != 0 and "do not load as a certificate and its key" in result.output
    assert len(result.output.strip().splitlines()) == 1


# --- end to end: the unchanged script --------------------------------------------------------


def legacy_library_proxy(port: int, cafile: Path) -> xmlrpc.client.ServerProxy:
    """What the legacy library does: it builds the URL from the app name; nothing else changes.

    On a real machine the URL is exactly ``https://ab123.infusionsoft.com/api/xmlrpc`` (port
    443, which keyshim serves there, or an iptables redirect points at it). A test cannot bind
    443 and ``getaddrinfo`` cannot rewrite ports, so the test adds keyshim's real port; the name,
    the certificate check and the path are the real ones. The context trusts ONLY the local CA,
    standing in for "the CA was added to the machine's trust store".
    """
    url = f"https://{APP}:{port}/api/xmlrpc"
    return xmlrpc.client.ServerProxy(url, context=client_context(cafile), use_builtin_types=True)


def test_unchanged_script_reaches_keap_through_keyshim_over_https(
    tmp_path: Path,
    settings: Settings,
    store: SqliteStore,
    sim_server: tuple[Simulator, BackgroundServer],
    resolve_app: list[str],
) -> None:
    sim, keap = sim_server
    add_oauth_account(store, sim, keap.url)
    key = issue_key(store, settings, "prod", label="legacy iSDK script")
    files = init_tls(tmp_path / "tls", [APP], 825)
    shim = BackgroundServer(
        KeyshimApp(settings, build_services),
        certfile=str(files.server_cert),
        keyfile=str(files.server_key),
    )
    with shim, legacy_library_proxy(shim.port, files.ca_cert) as server:
        assert shim.url.startswith("https://")
        assert server.DataService.echo(key, "tls") == "tls"
        contact_id = server.ContactService.add(key, {"FirstName": "Ada", "Email": "ada@x.test"})
        loaded = server.ContactService.load(key, contact_id, ["FirstName", "Email"])
        assert loaded == {"FirstName": "Ada", "Email": "ada@x.test"}
    assert APP in resolve_app  # the client went through the name, not an IP
    stats = sim.stats()
    assert stats["last_private_key"] == settings.placeholder  # forwarded to "Keap", key swapped


def test_a_certificate_not_from_the_trusted_ca_is_rejected(
    tmp_path: Path, settings: Settings, resolve_app: list[str]
) -> None:
    trusted = init_tls(tmp_path / "trusted", [APP], 825)
    impostor = init_tls(tmp_path / "impostor", [APP], 825)  # same name, another CA
    app = KeyshimApp(settings, build_services)
    shim = BackgroundServer(
        app, certfile=str(impostor.server_cert), keyfile=str(impostor.server_key)
    )
    with shim:
        with (
            legacy_library_proxy(shim.port, trusted.ca_cert) as server,
            pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"),
        ):
            server.DataService.echo("tls")
        # Control: the same server and client code succeed with the impostor's own CA, so the
        # failure above is the trust decision and nothing else.
        with legacy_library_proxy(shim.port, impostor.ca_cert) as server:
            assert server.DataService.echo("tls") == "tls"
    assert resolve_app


@pytest.mark.slow
def test_shim_serve_subprocess_serves_https(
    tmp_path: Path,
    settings: Settings,
    store: SqliteStore,
    sim_server: tuple[Simulator, BackgroundServer],
    resolve_app: list[str],
) -> None:
    """The real command line: ``python -m shim serve --certfile ... --keyfile ...``."""
    sim, keap = sim_server
    add_oauth_account(store, sim, keap.url)
    key = issue_key(store, settings, "prod")
    files = init_tls(tmp_path / "tls", [APP], 825)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIM_")}
    env["SHIM_SCHEDULER_INTERVAL"] = "0"
    log_path = tmp_path / "serve.log"
    command = [
        sys.executable,
        "-m",
        "shim",
        "--db",
        settings.db,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--certfile",
        str(files.server_cert),
        "--keyfile",
        str(files.server_key),
        "--log-level",
        "warning",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ctx = client_context(files.ca_cert)
    body = (
        b"<methodCall><methodName>DataService.echo</methodName><params><param><value>"
        b"tls ok</value></param></params></methodCall>"
    )  # the check the instructions print (curl), answered by keyshim itself
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "shim serve did not answer over HTTPS"
            conn = http.client.HTTPSConnection(APP, port, timeout=5, context=ctx)
            try:
                conn.request("POST", "/api/xmlrpc", body=body)
                response = conn.getresponse()
                answer = response.read()
                break
            except (ConnectionError, ssl.SSLEOFError):
                time.sleep(0.1)
            finally:
                conn.close()
        assert response.status == 200
        assert xmlrpc.client.loads(answer)[0] == ("tls ok",)
        with legacy_library_proxy(port, files.ca_cert) as server:
            assert server.DataService.echo(key, "tls") == "tls"
        assert "https://127.0.0.1:" in log_path.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
