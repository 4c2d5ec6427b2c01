"""``shim ...`` with Keap's per-credential quota budget lifted, for throughput benchmarks.

keyshim deliberately holds every OAuth client to Keap's spike limit (25 calls a second, see
shim/keap/budget.py), so unmodified it would serve the benchmark at 25 requests/s whatever its own
speed. This launcher raises those limits out of reach before the CLI runs; the budget code
still runs on every call, only its numbers change. It patches at import time, outside the
``__main__`` guard, so uvicorn's worker processes (started with multiprocessing "spawn", which
re-imports this file) get the same limits.

Usage: python3 bench/keyshim_serve.py serve --port 8080 [--workers 2]
"""

from shim.cli import main
from shim.keap import budget

UNLIMITED = (1e9, 1e9)  # calls a second, calls a minute
for kind in budget.KEAP_LIMITS:
    budget.KEAP_LIMITS[kind] = UNLIMITED

if __name__ == "__main__":
    main()
