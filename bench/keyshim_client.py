"""``shim ...`` with the upstream HTTP client chosen by
``BENCH_CLIENT`` (``http1``, ``httpx-aiohttp`` or ``aiohttp``; see bench/client_variants.py).

keyshim builds its ``Upstream`` in ``shim.serve.runtime.build_services``; this launcher replaces the
class it builds there, before the CLI runs, so everything else in keyshim (parsing, key check,
budget, audit, log line, metrics, streaming the answer) is exactly as shipped. It patches at
import time, so uvicorn worker processes would get the same client. bench/stack.py lifts
Keap's quota budget through ``SHIM_KEAP_LIMITS``.

Usage: BENCH_CLIENT=aiohttp python3 bench/keyshim_client.py serve --port 8080
"""

import os

from client_variants import upstream_class

from shim.cli import main
from shim.serve import runtime

runtime.Upstream = upstream_class(os.environ.get("BENCH_CLIENT", "http1"))  # type: ignore[misc]

if __name__ == "__main__":
    main()
