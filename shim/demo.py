"""``shim demo``: a full round trip, explained, with nothing but loopback.

It does what an admin and an old script would do: start Keap (the bundled simulator), set up
keyshim with the CLI, run keyshim as its own process, then talk to it with Python's
``xmlrpc.client`` exactly as a 2012-era script did, including a fault, and finally wait for the
access token to expire to show keyshim refreshing it on its own.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import xmlrpc.client
from pathlib import Path
from typing import Any

TOKEN_LIFETIME = 10  # seconds: long enough for the session, short enough to watch it expire
INLINE_MARGIN = 2


def say(text: str) -> None:
    print(textwrap.fill(text, width=92, initial_indent="  ", subsequent_indent="  "))


def step(title: str) -> None:
    print(f"\n== {title}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get_json(url: str, data: dict[str, Any] | None = None) -> Any:
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up at {url}")


class Demo:
    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.env = {
            **os.environ,
            "SHIM_DB": str(workdir / "keyshim.db"),
            "SHIM_INLINE_MARGIN": str(INLINE_MARGIN),
            "SHIM_LOG_LEVEL": "warning",
            # The background refresher would renew these 10-second tokens at once (its margin
            # is 6 h); it is off here so the demo shows the refresh a call triggers.
            "SHIM_SCHEDULER_INTERVAL": "0",
        }
        self.env.pop("SHIM_SECRET_KEY", None)
        self.procs: list[subprocess.Popen[bytes]] = []

    def shim(self, *args: str, show: bool = True) -> str:
        if show:
            print("  $ shim " + " ".join(a if " " not in a else repr(a) for a in args))
        done = subprocess.run(
            [sys.executable, "-m", "shim", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"shim {args[0]} failed: {done.stderr.strip()}")
        return done.stdout

    def start(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.dir / log, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "shim", *args],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def run(self) -> None:
        step("1. Start Keap (the bundled simulator)")
        sim_port = _free_port()
        sim = f"http://127.0.0.1:{sim_port}"
        proc = self.start(
            ["simulator", "--port", str(sim_port), "--access-token-lifetime", str(TOKEN_LIFETIME)],
            "simulator.log",
        )
        _wait_http(sim + "/_sim/stats", proc, "the simulator")
        client = _get_json(sim + "/_sim/clients", {})
        tokens = _get_json(sim + "/_sim/tokens", {"client_id": client["client_id"]})
        say(
            f"A stand-in for Keap runs at {sim}: its token endpoint hands out {TOKEN_LIFETIME}-"
            "second access tokens and single-use refresh tokens, and its OAuth XML-RPC "
            "endpoint answers like Keap's. We registered an OAuth client and authorized it "
            "once, as a human would in Keap's consent screen."
        )

        step("2. Set keyshim up, as an admin would")
        self.shim("init", show=False)
        print(f"  $ shim init                      # database in {self.dir}")
        print(
            "  $ shim account add demo --client-id ... --client-secret ... --xmlrpc-url ... "
            "--token-url ..."
        )
        self.shim(
            "account",
            "add",
            "demo",
            "--client-id",
            client["client_id"],
            "--client-secret",
            client["client_secret"],
            "--xmlrpc-url",
            sim + "/crm/xmlrpc/v1",
            "--token-url",
            sim + "/token",
            "--authorize-url",
            sim + "/app/oauth/authorize",
            show=False,
        )
        print(
            "  $ shim account import-tokens demo --access-token ... --refresh-token ... "
            f"--expires-in {tokens['expires_in']}"
        )
        self.shim(
            "account",
            "import-tokens",
            "demo",
            "--access-token",
            tokens["access_token"],
            "--refresh-token",
            tokens["refresh_token"],
            "--expires-in",
            str(tokens["expires_in"]),
            show=False,
        )
        issued = json.loads(
            self.shim("key", "issue", "demo", "--label", "old newsletter script", "--json")
        )
        key = issued["key"]
        say(
            f"keyshim stored the OAuth client and the token pair encrypted, and issued a local "
            f"key {issued['prefix']}… for the script. The script will send this key where its "
            "old Keap API key used to go; it never leaves this machine."
        )

        step("3. Start keyshim")
        port = _free_port()
        proc = self.start(["serve", "--port", str(port)], "keyshim.log")
        _wait_http(f"http://127.0.0.1:{port}/healthz", proc, "keyshim")
        url = f"http://127.0.0.1:{port}/api/xmlrpc"
        say(f"keyshim listens on {url}. The only change to the script is this URL.")

        step("4. Run the old script (Python's xmlrpc.client, unchanged but for the URL)")
        server: Any = xmlrpc.client.ServerProxy(url)
        print(f"  >>> server = xmlrpc.client.ServerProxy({url!r})")
        reply = server.DataService.echo(key, "hello from 2012")
        print(f"  DataService.echo(key, 'hello from 2012')   -> {reply!r}")
        cid = server.ContactService.add(
            key, {"FirstName": "Ada", "LastName": "Lovelace", "Email": "ada@example.com"}
        )
        print(f"  ContactService.add(key, {{FirstName: 'Ada', ...}})  -> new contact id {cid}")
        loaded = server.ContactService.load(key, cid, ["Id", "FirstName", "LastName", "Email"])
        print(f"  ContactService.load(key, {cid}, [...])     -> {loaded}")
        updated = server.ContactService.update(key, cid, {"LastName": "King"})
        print(f"  ContactService.update(key, {cid}, {{LastName: 'King'}}) -> {updated}")
        rows = server.DataService.query(
            key, "Contact", 10, 0, {"Email": "%@example.com"}, ["Id", "FirstName", "LastName"]
        )
        print(
            f"  DataService.query(key, 'Contact', 10, 0, {{Email: '%@example.com'}}, ...) -> {rows}"
        )
        tags = server.DataService.query(key, "ContactGroup", 1, 0, {"Id": "%"}, ["Id", "GroupName"])
        tag = tags[0]
        ok = server.ContactService.addToGroup(key, cid, tag["Id"])
        print(
            f"  ContactService.addToGroup(key, {cid}, {tag['Id']})  -> {ok}   "
            f"(tag {tag['GroupName']!r})"
        )
        try:
            server.ContactService.load(key, 999999, ["Id"])
            raise RuntimeError("loading a missing contact should have faulted")
        except xmlrpc.client.Fault as fault:
            print(
                f"  ContactService.load(key, 999999, ['Id'])  -> Fault {fault.faultCode}: "
                f"{fault.faultString}"
            )
        say(
            "Each call went script → keyshim (key checked, swapped for a placeholder) → Keap "
            "with an OAuth bearer token → back to the script unchanged. The missing contact "
            "came back as the same [RecordNotFound] fault Keap always sent, so the script's "
            "error handling still works."
        )
        try:
            server.DataService.echo("shk_" + "0" * 40, "x")
            raise RuntimeError("a wrong key should have faulted")
        except xmlrpc.client.Fault as fault:
            print(
                f"  with a wrong key                          -> Fault {fault.faultCode}: "
                f"{fault.faultString}"
            )
        stats = _get_json(sim + "/_sim/stats")
        if stats.get("last_private_key") == key:
            raise RuntimeError("the local key reached Keap")
        say(
            f"Keap saw the placeholder {stats.get('last_private_key')!r} as the first "
            "parameter, never the local key."
        )

        step("5. Let the access token expire")
        before = stats["refreshes_served"]
        say(
            f"The access token lives {TOKEN_LIFETIME} s. keyshim refreshes it before "
            f"forwarding once less than {INLINE_MARGIN} s are left. Waiting..."
        )
        chain = json.loads(self.shim("account", "list", "--json", show=False))[0]["tokens"]
        expires = calendar.timegm(
            time.strptime(chain["access_token_expires"], "%Y-%m-%dT%H:%M:%SZ")
        )
        time.sleep(max(0.0, expires - time.time() - INLINE_MARGIN + 1.0))
        again = server.ContactService.load(key, cid, ["FirstName", "LastName"])
        print(f"  ContactService.load(key, {cid}, [...])     -> {again}")
        after = _get_json(sim + "/_sim/stats")["refreshes_served"]
        if after != before + 1:
            raise RuntimeError(f"expected one refresh, Keap served {after - before}")
        listing = json.loads(self.shim("account", "list", "--json", show=False))[0]["tokens"]
        say(
            f"Keap's token endpoint served exactly {after - before} refresh: keyshim used the "
            "single-use refresh token once, stored the new pair durably before using it "
            f"(chain generation now {listing['generation']}), and the call went through "
            "with a fresh token. The script noticed nothing. (In production `shim serve` also "
            "refreshes every chain in the background, hours before expiry.)"
        )


def run_demo(*, keep: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="keyshim-demo-"))
    demo = Demo(workdir)
    print("keyshim demo: an old Infusionsoft XML-RPC script, kept alive on Keap OAuth.")
    try:
        demo.run()
    except (RuntimeError, OSError, xmlrpc.client.Error) as exc:
        print(f"\nDEMO FAILED: {exc}", file=sys.stderr)
        for log in ("keyshim.log", "simulator.log"):
            with contextlib.suppress(OSError):
                tail = (workdir / log).read_text(errors="replace").splitlines()[-15:]
                print(f"--- last lines of {log}:", *tail, sep="\n", file=sys.stderr)
        return 1
    finally:
        demo.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\nDemo finished: every step worked." + (f" Files kept in {workdir}" if keep else ""))
    return 0
