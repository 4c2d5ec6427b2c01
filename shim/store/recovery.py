"""Recovery files: a token pair Keap issued that the store could not take (yet).

Keap spends the old refresh token the moment it answers a refresh, so the new pair must
outlive a store that refuses writes (a lock held past the busy timeout, a full disk, a
read-only remount) and a process that dies before the store write commits. So every new pair
goes first to one small file per account in a local directory (written ahead of
``put_tokens``, and kept while ``put_tokens`` fails), sealed under the master key
(``SecretBox``, context ``recovery:<account>``: no token is ever in plaintext on disk), written
atomically and fsynced with its directory (:func:`shim.files.write_private`). Once the store
has the pair, the file is deleted, but only while it still holds that pair (``discard``).

The directory is a store concern: beside the SQLite database by default, ``SHIM_RECOVERY_DIR``,
or for PostgreSQL this host's keyshim directory.

A file names the generation it follows (``base_generation``: the stored chain's generation
when Keap rotated it). It is applied only while the stored chain is still at that generation;
a store that has moved on already holds something newer, and the file is stale.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from shim.files import remove_private, write_private
from shim.models import TokenPair
from shim.settings import Settings
from shim.store.secrets import SecretBox

__all__ = ["RecoveredPair", "RecoveryFiles", "recovery_files"]

_SUFFIX = ".recovery."


@dataclass(frozen=True)
class RecoveredPair:
    """A pair kept in a recovery file, and what it replaces."""

    account: str
    pair: TokenPair
    base_generation: int  # the stored generation the pair follows
    issued_at: float  # when Keap issued it (this process's clock)


class RecoveryFiles:
    """One sealed file per account under ``directory``, named ``<prefix>.recovery.<account>``."""

    def __init__(self, directory: str | os.PathLike[str], prefix: str, box: SecretBox) -> None:
        self.directory = Path(directory)
        self.prefix = prefix
        self._box = box

    def path(self, account: str) -> Path:
        return self.directory / f"{self.prefix}{_SUFFIX}{account}"

    def write(self, kept: RecoveredPair) -> Path:
        """Seal and write durably (atomic replace, file and directory fsynced)."""
        document = json.dumps(
            {
                "access_token": kept.pair.access_token,
                "refresh_token": kept.pair.refresh_token,
                "expires_at": kept.pair.expires_at,
                "scope": kept.pair.scope,
                "base_generation": kept.base_generation,
                "issued_at": kept.issued_at,
            }
        )
        sealed = self._box.seal(document, context=_context(kept.account))
        target = self.path(kept.account)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_private(target, sealed + "\n")
        return target

    def read(self, account: str) -> RecoveredPair | None:
        """The kept pair, or None if there is no file. A file that does not open raises
        DecryptError (never deleted here: it may be the only copy of a live token)."""
        try:
            sealed = self.path(account).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        fields = json.loads(self._box.open(sealed, context=_context(account)))
        pair = TokenPair(
            fields["access_token"], fields["refresh_token"], fields["expires_at"], fields["scope"]
        )
        return RecoveredPair(account, pair, int(fields["base_generation"]), fields["issued_at"])

    def remove(self, account: str) -> None:
        remove_private(self.path(account))

    def discard(self, account: str, *pairs: TokenPair) -> bool:
        """Remove the file only while it holds one of ``pairs`` (the ones now stored or
        superseded): a process sharing the directory may have written a newer pair there
        since, ahead of its own store write. A file that does not open stays."""
        try:
            kept = self.read(account)
        except Exception:
            return False
        if kept is None or kept.pair.refresh_token not in {p.refresh_token for p in pairs}:
            return False
        self.remove(account)
        return True

    def accounts(self) -> list[str]:
        """Accounts with a recovery file."""
        start = self.prefix + _SUFFIX
        with contextlib.suppress(FileNotFoundError):
            return sorted(
                p.name[len(start) :] for p in self.directory.iterdir() if p.name.startswith(start)
            )
        return []


def _context(account: str) -> str:
    return f"recovery:{account}"


def recovery_files(settings: Settings, box: SecretBox) -> RecoveryFiles:
    """Where this store's recovery files live: ``SHIM_RECOVERY_DIR``, else beside the database
    file, or for a PostgreSQL database in this host's keyshim directory (beside the key file:
    a URL names no local place, and its password must never become a file name)."""
    if settings.recovery_dir:
        return RecoveryFiles(settings.recovery_dir, "keyshim", box)
    if settings.db_is_url:
        return RecoveryFiles(settings.local_dir, "keyshim", box)
    db = Path(settings.db)
    return RecoveryFiles(db.parent, db.name, box)
