"""Scripts that stop reading their answer must not pin Keap connections (issue 11).

Real loopback sockets both ways: keyshim under uvicorn in front of the simulator under uvicorn,
a pool of two Keap connections, two scripts that ask for a multi-megabyte file and never read
the answer, and other scripts that must keep getting answers.
"""

from __future__ import annotations

import os
import socket
import time
import xmlrpc.client
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from shim import xmlrpc as shim_xmlrpc
from shim.serve.app import KeyshimApp
from shim.serve.runtime import build_services
from shim.settings import Settings
from shim.simulator import SimConfig, Simulator
from shim.store.sqlite import SqliteStore
from tests.support.servers import BackgroundServer
from tests.support.stack import add_oauth_account, issue_key

pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]


@pytest.fixture
def sim() -> Iterator[tuple[Simulator, BackgroundServer]]:
    simulator = Simulator(SimConfig())
    with BackgroundServer(simulator.app) as server:
        yield simulator, server


def stalled_request(port: int, body: bytes) -> socket.socket:
    """A script that sends its call and never reads the answer."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    head = (
        f"POST /api/xmlrpc HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body)
    return sock


def cut_off(sock: socket.socket, within: float) -> bool:
    """Whether keyshim closed this connection (reading on ends in EOF or a reset)."""
    sock.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if not sock.recv(1 << 20):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return False


def test_clients_that_stop_reading_do_not_starve_others(
    settings: Settings, store: SqliteStore, sim: tuple[Simulator, BackgroundServer]
) -> None:
    simulator, sim_server = sim
    add_oauth_account(store, simulator, sim_server.url)
    key = issue_key(store, settings, "prod")
    file_id = simulator.add_file(None, "big.bin", os.urandom(8 * 1024 * 1024))
    shim_settings = replace(
        settings, max_connections=2, client_write_timeout=1.0, upstream_timeout=6.0
    )
    with BackgroundServer(KeyshimApp(shim_settings, build_services)) as shim:
        big = shim_xmlrpc.dumps_call("FileService.getFile", [key, file_id])
        stalled = [stalled_request(shim.port, big) for _ in range(2)]
        try:
            deadline = time.monotonic() + 10
            while simulator.stats()["calls_by_method"].get("FileService.getFile", 0) < 2:
                assert time.monotonic() < deadline, "the big answers never started"
                time.sleep(0.02)
            time.sleep(0.3)  # both answers are streaming into full socket buffers now

            def echo(n: int) -> object:
                proxy = xmlrpc.client.ServerProxy(f"{shim.url}/api/xmlrpc")
                return proxy.DataService.echo(key, f"hello {n}")

            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=4) as pool:
                answers = list(pool.map(echo, range(8)))
            took = time.monotonic() - started
            assert answers == [f"hello {n}" for n in range(8)]
            assert took < 5.0, f"other callers waited {took:.1f}s behind stalled clients"
            assert all(cut_off(sock, 5.0) for sock in stalled)
        finally:
            for sock in stalled:
                sock.close()
