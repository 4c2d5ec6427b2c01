"""No secret ever leaks: a whole keyshim life, then every byte it wrote is searched.

The run covers what an operator does (init, accounts with an OAuth client and a service key,
token import, keys, serve with debug logs, calls that succeed and fail, token refreshes, a dead
chain with an alert, status, usage, account and key listings) and collects everything keyshim
wrote: server logs, every CLI output (except the one-time ``key issue`` answer, which must show
the key), /healthz, the alert webhook's payloads, and the database files. Then every secret the
run used (local keys, client secret, service key, every access and refresh token Keap issued)
is searched for in all of it, as text and as its base64 and URL-encoded forms.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import xmlrpc.client
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from shim.cli import cli
from shim.simulator import SimConfig, Simulator
from tests.support.servers import BackgroundServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


class Webhook:
    """A tiny ASGI app that records alert payloads."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_whole_run_leaks_no_secret(tmp_path: Path) -> None:
    sim = Simulator(SimConfig(access_token_lifetime=4))
    hook = Webhook()
    env = {
        **os.environ,
        "SHIM_DB": str(tmp_path / "k.db"),
        "SHIM_LOG_LEVEL": "debug",
        "SHIM_INLINE_MARGIN": "1",
        "SHIM_SCHEDULER_INTERVAL": "0.5",
        "SHIM_REFRESH_MARGIN": "2",
        "SHIM_AUDIT_FLUSH": "0.2",
    }
    env.pop("SHIM_SECRET_KEY", None)
    outputs: list[str] = []

    runner = CliRunner()

    def shim(*args: str, record: bool = True, code: int = 0) -> str:
        """The CLI in-process (click's runner), with stdout and stderr both kept; ``code`` is
        the exit code the command must give."""
        done = runner.invoke(cli, list(args), env=env, catch_exceptions=False)
        if record:
            outputs.append(done.output)
        assert done.exit_code == code, (args, done.exit_code, done.output)
        return done.stdout

    with BackgroundServer(sim.app) as keap, BackgroundServer(hook) as webhook:
        base = keap.url
        client_id, client_secret = sim.add_client()
        service_key = sim.add_service_key()
        pair = sim.issue_tokens(client_id)
        shim("init")
        shim(
            "account",
            "add",
            "prod",
            "--client-id",
            client_id,
            "--client-secret",
            client_secret,
            "--xmlrpc-url",
            base + "/crm/xmlrpc/v1",
            "--token-url",
            base + "/token",
            "--authorize-url",
            base + "/app/oauth/authorize",
        )
        shim(
            "account",
            "add",
            "sak",
            "--service-key",
            service_key,
            "--xmlrpc-url",
            base + "/crm/xmlrpc/v1",
        )
        shim(
            "account",
            "import-tokens",
            "prod",
            "--access-token",
            pair["access_token"],
            "--refresh-token",
            pair["refresh_token"],
            "--expires-in",
            "4",
        )
        key = json.loads(shim("key", "issue", "prod", "--label", "x", "--json", record=False))
        key2 = json.loads(shim("key", "issue", "sak", "--label", "y", "--json", record=False))
        revoked = json.loads(shim("key", "issue", "prod", "--label", "z", "--json", record=False))
        shim("key", "revoke", revoked["id"])
        port = _free_port()
        log = tmp_path / "serve.log"
        with open(log, "wb") as out:
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "shim",
                    "serve",
                    "--port",
                    str(port),
                    "--alert-webhook",
                    webhook.url + "/alert",
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    urllib.request.urlopen(url + "/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.05)
            proxy = xmlrpc.client.ServerProxy(url + "/api/xmlrpc")
            proxy2 = xmlrpc.client.ServerProxy(f"{url}/api/xmlrpc/v1?access_token={key2['key']}")
            deadline = time.time() + 6  # a few token lifetimes: refreshes happen
            while time.time() < deadline:
                proxy.DataService.echo(key["key"], "hello")
                proxy2.DataService.echo("backwards-compatability", "via query")
                for bad in (revoked["key"], key["key"][:-1] + "x", "shk_nope"):
                    with contextlib.suppress(xmlrpc.client.Fault):
                        proxy.DataService.echo(bad, "x")
                with contextlib.suppress(xmlrpc.client.Fault):
                    proxy.ContactService.load(key["key"], 999, ["Id"])
                time.sleep(0.3)
            # kill the chain: Keap revokes the current refresh token, the next refresh is spent
            sim.config.access_token_lifetime = 1
            for token in list(sim.auth.refresh):
                sim.auth.refresh[token].spent = True
            for _ in range(30):
                try:
                    proxy.DataService.echo(key["key"], "x")
                except xmlrpc.client.Fault as fault:
                    if "[ReauthorizationRequired]" in fault.faultString:
                        break
                time.sleep(0.3)
            with urllib.request.urlopen(url + "/healthz", timeout=5) as r:
                outputs.append(r.read().decode())
        except urllib.error.HTTPError as exc:  # 503 once the chain is dead
            outputs.append(exc.read().decode())
        finally:
            server.terminate()
            server.wait(timeout=20)
        # the chain is dead: status says so (2: an account needs re-authorization) and the
        # refresh fails (1); everything else succeeds
        for args, code in (
            (["account", "list"], 0),
            (["account", "list", "--json"], 0),
            (["key", "list"], 0),
            (["key", "list", "--json"], 0),
            (["status"], 2),
            (["status", "--json"], 2),
            (["usage", "--json"], 0),
            (["usage", "--csv"], 0),
            (["usage"], 0),
            (["refresh", "--all"], 1),
        ):
            shim(*args, code=code)
        assert sim.stats()["refreshes_served"] >= 2, "the run should include token rotations"

    secrets = {
        "client secret": client_secret,
        "service key": service_key,
        "local key": key["key"],
        "local key 2": key2["key"],
        "revoked key": revoked["key"],
    }
    for token in [*sim.auth.access, *sim.auth.refresh]:
        secrets[f"token {token[:4]}"] = token
    assert len(secrets) > 8
    haystacks = {"serve.log": log.read_bytes()}
    haystacks.update({f"cli output {i}": o.encode() for i, o in enumerate(outputs)})
    haystacks.update({f"webhook {i}": b for i, b in enumerate(hook.bodies)})
    for path in [*tmp_path.glob("k.db*"), *tmp_path.glob("k.db.locks/*")]:
        if path.is_file() and not path.name.endswith(".key"):
            haystacks[path.name] = path.read_bytes()
    assert hook.bodies, "the dead chain should have raised an alert"
    assert any(json.loads(b)["event"] == "dead" for b in hook.bodies)
    assert b'"logger": "shim.access"' in log.read_bytes()  # the call log was written
    leaks = []
    for what, secret in secrets.items():
        forms = {
            secret.encode(),
            base64.b64encode(secret.encode()),
            urllib.parse.quote(secret).encode(),
        }
        for where, data in haystacks.items():
            if any(form in data for form in forms):
                leaks.append(f"{what} in {where}")
    assert leaks == []
