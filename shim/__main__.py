"""Allow ``python -m shim`` (used by the demo and the process tests)."""

from shim.cli import main

main()
