"""Crash points for the refresh crash tests: ``SHIM_FAILPOINT=<name>`` kills the process there.

Proving "never lose a rotated refresh token" needs a SIGKILL at each step of a refresh, and
timing cannot hit those steps reliably from outside. Unset (always, in production) this is
a dictionary lookup and nothing else.
"""

from __future__ import annotations

import os
import signal

#: Keap's new pair is sealed in its recovery file (written ahead of the store write).
AFTER_WRITE_AHEAD = "after_write_ahead"
#: The steps of a refresh, in order (see chains.Chains._refresh_locked and _keep).
POINTS = ("before_journal", "after_journal", "after_answer", AFTER_WRITE_AHEAD, "after_store")
#: Only when the store refuses the new pair (chains.Chains._keep_aside): the pair is sealed in
#: its recovery file, and not stored.
AFTER_RECOVERY_FILE = "after_recovery_file"


def hit(name: str) -> None:
    if os.environ.get("SHIM_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
