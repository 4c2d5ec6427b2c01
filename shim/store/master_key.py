"""The master key: where it comes from, its first creation, and its rotation.

The key opens every sealed secret in the store (:mod:`shim.store.secrets`). It comes from
``SHIM_SECRET_KEY`` or from a key file (mode 0600) next to the database, which ``shim init``
creates. Rotation writes the new key before the store changes and re-encrypts in one
transaction, so an interruption never leaves secrets that no key opens: at worst a
``<key file>.new`` is left behind, and every command refuses to start until someone looks.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shim.errors import CliError
from shim.files import write_private
from shim.settings import Settings
from shim.store.protocol import Store
from shim.store.secrets import SecretBox, decode_master_key, encode_master_key, generate_master_key


def load(settings: Settings) -> bytes:
    """The master secret: ``SHIM_SECRET_KEY`` or the key file ``shim init`` made."""
    if settings.secret_key:
        try:
            return decode_master_key(settings.secret_key)
        except ValueError as exc:
            raise CliError(f"SHIM_SECRET_KEY: {exc}") from None
    path = Path(settings.key_file)
    if Path(settings.key_file + ".new").exists():
        raise CliError(
            f"{settings.key_file}.new exists: a master-key rotation was interrupted "
            "(see README: Rotating the master key)"
        )
    if not path.exists():
        raise CliError(f"no master key at {path} (run `shim init`, or set SHIM_SECRET_KEY)")
    try:
        return decode_master_key(path.read_text().strip())
    except ValueError as exc:
        raise CliError(f"{path}: {exc}") from None


def needed(settings: Settings) -> str | None:
    """A fresh key (encoded) if ``shim init`` has to make one: the key comes neither from the
    environment nor from an existing key file. Not written yet (see :func:`create_file`)."""
    if settings.secret_key or Path(settings.key_file).exists():
        return None
    return encode_master_key(generate_master_key())


def create_file(settings: Settings, encoded: str | None = None) -> bool:
    """Write the key file (0600; a fresh key unless ``encoded``) unless the key comes from the
    environment or the file exists; True if it was written."""
    if settings.secret_key or Path(settings.key_file).exists():
        return False
    write_private(
        settings.key_file,
        (encoded or encode_master_key(generate_master_key())) + "\n",
        exclusive=True,
    )
    return True


@dataclass(frozen=True)
class Rotation:
    """What a rotation did: ``count`` secrets re-encrypted; the new key is at ``key_path``,
    already installed as the key file unless the old key came from ``SHIM_SECRET_KEY``."""

    count: int
    key_path: Path
    installed: bool


def rotation_target(settings: Settings, new_key_file: str | None = None) -> Path:
    """Where a rotation writes the new key; CliError if it cannot start.

    With a key file the new key goes to ``<key file>.new`` (or ``new_key_file``) first and
    replaces the key file once the store is rewritten. With ``SHIM_SECRET_KEY`` it goes to
    ``new_key_file`` only, and whoever sets the environment installs it.
    """
    if settings.secret_key and not new_key_file:
        raise CliError("the master key comes from SHIM_SECRET_KEY: give --new-key-file")
    target = Path(new_key_file) if new_key_file else Path(settings.key_file + ".new")
    if target.exists():
        raise CliError(f"{target} exists: an earlier rotation was interrupted; see the README")
    return target


def rotate(
    settings: Settings,
    store: Store,
    target: Path,
    progress: Callable[[str], None] = lambda step: None,
) -> Rotation:
    """Re-encrypt every secret in ``store`` under a new master key written to ``target``
    (from :func:`rotation_target`)."""
    new_key = generate_master_key()
    progress("1/3 writing the new key")
    write_private(target, encode_master_key(new_key) + "\n", exclusive=True)
    progress("2/3 re-encrypting secrets")
    count = store.rekey(SecretBox(new_key))
    if settings.secret_key:
        return Rotation(count, target, installed=False)
    os.replace(target, settings.key_file)
    return Rotation(count, Path(settings.key_file), installed=True)
