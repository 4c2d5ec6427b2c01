"""The system under test, on loopback: a canned upstream, an nginx proxy, keyshim processes.

* ``upstream`` is Debian's nginx answering ``<int>42</int>`` for POST /crm/xmlrpc/v1 once the
  ``Authorization: Bearer <token>`` header is right (and a static 64 MB ``FileService.getFile``
  answer at /crm/xmlrpc/v1/getfile): the fastest XML-RPC responder there is, so that keyshim's
  own cost dominates.
* ``proxy`` is a second nginx that only adds the header (keep-alive pool to the upstream): the
  floor for any proxy.
* keyshim runs as ``shim serve`` subprocesses against a database provisioned here.

Each nginx is a non-daemon child (``daemon off; master_process on; worker_processes 1``) with
its config, logs and temp files in one temporary directory.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from util import progress

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
SBIN_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])

#: The canned answer of the upstream; wrk's Lua script checks for ``<int>42</int>``.
ANSWER = (
    '<?xml version="1.0" encoding="UTF-8"?><methodResponse><params><param>'
    "<value><int>42</int></value></param></params></methodResponse>"
)
XMLRPC_PATH = "/crm/xmlrpc/v1"
FILE_PATH = "/crm/xmlrpc/v1/getfile"
FILE_MB = 64
#: Imported access tokens expire this far ahead, so no refresh happens during a run.
TEN_YEARS = 10 * 365 * 86400.0


def ensure_tools() -> tuple[str, str]:
    """Paths of nginx and wrk, installed with apt-get if missing."""
    missing = [name for name in ("nginx", "wrk") if shutil.which(name, path=SBIN_PATH) is None]
    if missing:
        if os.geteuid() != 0:
            sys.exit(f"bench: needs {' '.join(missing)}: run `apt-get install -y nginx wrk`")
        progress(f"installing {' '.join(missing)} with apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    nginx = shutil.which("nginx", path=SBIN_PATH)
    wrk = shutil.which("wrk", path=SBIN_PATH)
    assert nginx is not None and wrk is not None
    return nginx, wrk


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:g}s")


def stop(proc: subprocess.Popen[bytes], *, graceful_signal: int = signal.SIGTERM) -> None:
    """Stop one child we started (by its own pid), escalating to SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(graceful_signal)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- nginx ------------------------------------------------------------------------------------

_NGINX_COMMON = """\
{user}
worker_processes 1;
daemon off;
master_process on;
pid {dir}/{name}.pid;
error_log {dir}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/{name}-body;
    proxy_temp_path {dir}/{name}-proxy;
    fastcgi_temp_path {dir}/{name}-fastcgi;
    uwsgi_temp_path {dir}/{name}-uwsgi;
    scgi_temp_path {dir}/{name}-scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
{body}
}}
"""

_UPSTREAM_HTTP = """\
    server {{
        listen 127.0.0.1:{port};
        location = {xmlrpc} {{
            if ($http_authorization != "Bearer {token}") {{ return 401; }}
            default_type text/xml;
            return 200 '{answer}';
        }}
        # POST to a static file is a 405 in nginx; error_page re-runs it as a GET.
        location = {file} {{
            if ($http_authorization != "Bearer {token}") {{ return 401; }}
            error_page 405 =200 /getfile.xml;
            return 405;
        }}
        location = /getfile.xml {{
            internal;
            root {dir};
            default_type text/xml;
        }}
    }}
"""

_PROXY_HTTP = """\
    upstream keap {{
        server 127.0.0.1:{upstream_port};
        keepalive 128;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location = /api/xmlrpc {{
            proxy_pass http://keap{xmlrpc};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer {token}";
        }}
    }}
"""


@dataclass
class Nginx:
    name: str
    port: int
    proc: subprocess.Popen[bytes]


def start_nginx(nginx: str, workdir: Path, name: str, port: int, http_body: str) -> Nginx:
    user = "user root root;" if os.geteuid() == 0 else ""  # workers read files in workdir
    conf = workdir / f"{name}.conf"
    conf.write_text(_NGINX_COMMON.format(user=user, dir=workdir, name=name, body=http_body))
    cmd = [nginx, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / f"{name}-error.log")]
    subprocess.run([*cmd, "-t", "-q"], check=True)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    wait_for_port(port, proc, f"nginx {name}")
    return Nginx(name, port, proc)


def write_getfile_answer(path: Path, megabytes: int = FILE_MB) -> str:
    """A ``FileService.getFile`` methodResponse whose base64 text is ``megabytes`` MiB;
    returns the sha256 of the whole answer."""
    raw = os.urandom(megabytes * 1024 * 1024 * 3 // 4)
    answer = b"".join(
        (
            b'<?xml version="1.0" encoding="UTF-8"?><methodResponse><params><param><value><base64>',
            base64.b64encode(raw),
            b"</base64></value></param></params></methodResponse>\n",
        )
    )
    path.write_bytes(answer)
    return hashlib.sha256(answer).hexdigest()


# -- keyshim ----------------------------------------------------------------------------------


@dataclass
class Keys:
    """The local keys provisioned for the bench accounts."""

    bench: str  # account "bench": the canned <int>42</int> answer
    files: str  # account "files": the 64 MB getFile answer


def provision_keyshim(db: Path, upstream_base: str, token: str) -> Keys:
    """``shim init`` + two OAuth accounts with imported tokens + a key each, via the store
    (the same calls as ``shim account add/import-tokens`` and ``shim key issue``)."""
    from shim.access import keys
    from shim.models import Account, KeyRecord, TokenPair
    from shim.serve.runtime import init_files, open_store
    from shim.settings import Settings

    settings = Settings.from_env({}, db=str(db))
    init_files(settings)
    store = open_store(settings)
    try:
        hmac_key = store.server_secret("key-hmac")
        issued: dict[str, str] = {}
        for name, path in (("bench", XMLRPC_PATH), ("files", FILE_PATH)):
            now = time.time()
            store.add_account(
                Account(
                    name=name,
                    kind="oauth",
                    created_at=now,
                    client_id=f"bench-{name}",
                    client_secret="unused",
                    xmlrpc_url=upstream_base + path,
                    token_url=upstream_base + "/token",
                )
            )
            store.put_tokens(name, TokenPair(token, f"unused-{name}", now + TEN_YEARS), now)
            key = keys.make_key(hmac_key)
            store.add_key(
                KeyRecord(
                    id=key.id,
                    account=name,
                    label=f"bench {name}",
                    digest=key.digest,
                    prefix=key.prefix,
                    created_at=now,
                )
            )
            issued[name] = key.text
    finally:
        store.close()
    return Keys(bench=issued["bench"], files=issued["files"])


@dataclass
class Keyshim:
    label: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/xmlrpc"


#: Keap's limits raised out of reach for the throughput rows (see bench/README.md, Caveats).
UNLIMITED = "oauth=1000000000/s,1000000000/min;service_key=1000000000/s,1000000000/min"


def start_keyshim(
    label: str,
    db: Path,
    log: Path,
    *,
    workers: int = 1,
    keap_budget: bool = False,
    extra_env: Mapping[str, str] | None = None,
    launcher: Path | None = None,
) -> Keyshim:
    """``shim serve`` in a subprocess. Without ``keap_budget`` its ``SHIM_KEAP_LIMITS`` are
    raised out of reach (``UNLIMITED``): Keap's per-credential quota (25 calls/s per OAuth
    client) would otherwise cap every throughput figure at 25 requests/s. The budget code
    still runs on every call; only its numbers change. ``launcher`` runs another script in
    place of ``python -m shim`` (bench/clients.py swaps keyshim's HTTP client that way)."""
    port = free_port()
    # shim serve makes a fresh PROMETHEUS_MULTIPROC_DIR under /tmp unless one is given, and
    # never removes it; this one goes away with the bench's temporary directory.
    metrics = log.parent / f"metrics-{label}"
    metrics.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        "SHIM_DB": str(db),
        "SHIM_SCHEDULER_INTERVAL": "0",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        **({} if keap_budget else {"SHIM_KEAP_LIMITS": UNLIMITED}),
        **(extra_env or {}),
    }
    script = [str(launcher)] if launcher is not None else ["-m", "shim"]
    cmd = [sys.executable, *script, "serve", "--port", str(port), "--workers", str(workers)]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    return Keyshim(label, port, proc)


def start_floor(
    upstream_url: str,
    token: str,
    log: Path,
    *,
    app: str = "floor_proxy:app",
    extra_env: Mapping[str, str] | None = None,
) -> Keyshim:
    """bench/floor_proxy.py (or another forwarding ``app`` in bench/) under uvicorn as
    ``shim serve`` runs it (see that module)."""
    port = free_port()
    env = {
        **os.environ,
        "BENCH_FLOOR_UPSTREAM": upstream_url,
        "BENCH_FLOOR_TOKEN": token,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        **(extra_env or {}),
    }
    cmd = [
        sys.executable, "-m", "uvicorn", app, "--app-dir", str(BENCH_DIR),
        "--host", "127.0.0.1", "--port", str(port), "--http", "httptools", "--loop", "uvloop",
        "--no-access-log", "--no-proxy-headers", "--log-level", "warning",
    ]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    wait_for_port(port, proc, "floor proxy")
    return Keyshim("floor", port, proc)


def wait_healthy(shim: Keyshim, timeout: float = 60) -> None:
    """Wait for /healthz to answer 200 (lifespan startup done, the token chain is usable)."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{shim.port}/healthz"
    while time.monotonic() < deadline:
        if shim.proc.poll() is not None:
            raise RuntimeError(f"keyshim {shim.label} exited with status {shim.proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"keyshim {shim.label} was not healthy within {timeout:g}s")


# -- the whole stack -------------------------------------------------------------------------


@dataclass
class Stack:
    workdir: Path
    token: str
    upstream: Nginx
    proxy: Nginx
    keys: Keys
    file_sha256: str
    db: Path
    wrk: str

    @property
    def direct_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream.port}{XMLRPC_PATH}"

    @property
    def file_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream.port}{FILE_PATH}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}/api/xmlrpc"


@contextmanager
def running_stack(token: str) -> Iterator[tuple[Stack, ExitStack]]:
    """Start both nginx instances and provision keyshim's database; stop and clean up after.

    The ExitStack is for keyshim processes the caller starts, stopped before nginx is.
    """
    nginx, wrk = ensure_tools()
    workdir = Path(tempfile.mkdtemp(prefix="keyshim-bench-"))
    cleanup = ExitStack()
    try:
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        progress(f"writing the {FILE_MB} MB getFile answer and nginx configs in {workdir}")
        sha = write_getfile_answer(workdir / "getfile.xml")
        fields = {"token": token, "xmlrpc": XMLRPC_PATH, "file": FILE_PATH, "dir": workdir}
        up_port, proxy_port = free_port(), free_port()
        upstream_http = _UPSTREAM_HTTP.format(port=up_port, answer=ANSWER, **fields)
        upstream = start_nginx(nginx, workdir, "upstream", up_port, upstream_http)
        cleanup.callback(stop, upstream.proc, graceful_signal=signal.SIGQUIT)  # graceful
        proxy_http = _PROXY_HTTP.format(port=proxy_port, upstream_port=up_port, **fields)
        proxy = start_nginx(nginx, workdir, "proxy", proxy_port, proxy_http)
        cleanup.callback(stop, proxy.proc, graceful_signal=signal.SIGQUIT)
        progress(f"nginx upstream on :{up_port}, nginx proxy on :{proxy_port}")
        db = workdir / "keyshim.db"
        keys = provision_keyshim(db, f"http://127.0.0.1:{up_port}", token)
        stack = Stack(workdir, token, upstream, proxy, keys, sha, db, wrk)
        with ExitStack() as shims:
            yield stack, shims
    finally:
        cleanup.close()
