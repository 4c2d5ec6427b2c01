"""A faithful stand-in for Keap: token endpoint, authorize redirect, OAuth XML-RPC endpoint.

keyshim's tests, benchmarks and ``shim demo`` run against it instead of the real Keap. It
follows ``docs/keap.md``, including the inconvenient parts (single-use refresh tokens, JSON
401 and 429 bodies, ``[Tag]`` faults); where the facts are unknown, ``SimConfig`` has a switch.

In-process::

    sim = Simulator(SimConfig())
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app))

As a process: ``shim simulator`` calls ``serve`` and drives nothing else; tests then use the
JSON control API under ``/_sim/`` (see ``control.py``).
"""

from __future__ import annotations

import json
import socket
import sys
from typing import Any

from shim.simulator.app import Simulator
from shim.simulator.config import SimConfig

__all__ = ["SimConfig", "Simulator", "describe", "serve", "serve_simulator"]


def describe(sim: Simulator, base_url: str) -> dict[str, Any]:
    """A new OAuth client, its first token pair, a service key and the URLs to use them on.

    This is what a human gets from Keap's developer portal and consent screen, in one step.
    """
    base = base_url.rstrip("/")
    client_id, client_secret = sim.add_client()
    return {
        "client_id": client_id,
        "client_secret": client_secret,
        "tokens": sim.issue_tokens(client_id),
        "service_key": sim.add_service_key(),
        "xmlrpc_url": base + "/crm/xmlrpc/v1",
        "rest_url": base + "/crm/rest/v2",
        "token_url": base + "/token",
        "authorize_url": base + "/app/oauth/authorize",
        "control_url": base + "/_sim/",
    }


def serve(host: str, port: int, config: SimConfig) -> None:
    """Run a simulator under uvicorn until interrupted, after printing ``describe`` as JSON.

    Port 0 picks a free port first, so the printed URLs are the real ones.
    """
    from shim.serve import server  # the one module that imports uvicorn

    if port == 0:
        with socket.socket() as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
    sim = Simulator(config)
    print(json.dumps(describe(sim, f"http://{host}:{port}"), indent=2), flush=True)
    print(
        f"Keap simulator on http://{host}:{port}, REST v2 at http://{host}:{port}/crm/rest/v2 "
        "(Ctrl-C stops it)",
        file=sys.stderr,
        flush=True,
    )
    server.run(sim.app, host=host, port=port, log_level="warning")


#: The name ``shim simulator`` (cli.py) imports.
serve_simulator = serve
