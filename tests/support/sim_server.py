"""The simulator on a real loopback socket, so that forwarded calls go through ``shim.keap.http1``.

keyshim forwards XML-RPC calls with its own HTTP/1.1 client (``shim.keap.http1``), which only
speaks to sockets: given an httpx transport instead (``httpx.ASGITransport``), forwarding would
take httpx, and the in-process suite would test a path that production never takes.
``serve_simulator`` puts a test's ``Simulator`` behind uvicorn's own HTTP protocol (httptools,
as ``uvicorn[standard]`` serves in production) on 127.0.0.1 and an ephemeral port.

It serves in the test's own event loop, one listener per test, rather than from one server
thread for the whole session: the simulator is plain Python and asyncio state (held refreshes
are futures of the loop that parked them; its endpoints share token and quota state), so a
second thread would touch it concurrently with the test and resolve futures from the wrong
loop. A listener costs well under a millisecond; no thread, no cross-loop hand-off.

Nothing here uses uvicorn's ``Server.serve``/``shutdown``: they install signal handlers and
sleep 0.1 s on shutdown, which would cost every test a tenth of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from uvicorn.server import ServerState

from shim.simulator import Simulator

HOST = "127.0.0.1"


@contextlib.asynccontextmanager
async def serve_simulator(sim: Simulator) -> AsyncIterator[str]:
    """Serve ``sim`` on loopback for the block; yields its base URL (``http://127.0.0.1:N``)."""
    config = uvicorn.Config(
        sim.app,
        http="httptools",
        lifespan="off",
        log_config=None,  # leave logging as pytest set it up
        access_log=False,
    )
    config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=state, app_state={}
        ),
        HOST,
        0,
    )
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.close()
        for connection in list(state.connections):
            connection.shutdown()  # closes it now if idle, after its answer otherwise
        tasks = list(state.tasks)
        for task in tasks:  # a call the test left in flight (a held or stalled answer)
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 1.0)
