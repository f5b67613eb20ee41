"""Where the Fernet key comes from: the setting, else a file made on first run.

The embedded default must work with nothing configured, yet a key generated
per process would make stored api keys unreadable after a restart; so the
generated key is kept in ``<data_dir>/secret.key``, readable by its owner only.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet

from detectflow.core.settings import Settings
from detectflow.store.crypto import ApiKeyCipher, SecretKeyError

__all__ = ["SECRET_KEY_FILE", "load_or_create_secret_key"]

SECRET_KEY_FILE = "secret.key"


def load_or_create_secret_key(settings: Settings) -> str:
    """``settings.secret_key`` if set, else ``<data_dir>/secret.key`` (created mode 0600)."""
    if settings.secret_key:
        ApiKeyCipher(settings.secret_key)  # fail now, naming the setting, if malformed
        return settings.secret_key
    path = Path(settings.data_dir) / SECRET_KEY_FILE
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)  # another process created it first: use theirs
    with os.fdopen(fd, "wb") as f:
        f.write(key + b"\n")
    return key.decode("ascii")


def _read(path: Path) -> str:
    try:
        key = path.read_text(encoding="ascii").strip()
    except (UnicodeError, IsADirectoryError, PermissionError) as exc:
        raise SecretKeyError(
            f"cannot read the secret key file {path}: {exc.__class__.__name__}; "
            "fix it or set DETECTFLOW_SECRET_KEY"
        ) from None
    try:
        ApiKeyCipher(key)
    except SecretKeyError:
        raise SecretKeyError(
            f"{path} does not hold a valid Fernet key; restore it or set DETECTFLOW_SECRET_KEY"
        ) from None
    return key
