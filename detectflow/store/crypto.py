"""Provider api keys and camera URLs, encrypted at rest with Fernet.

A database dump alone must not leak the keys of the detection services or
the passwords in camera URLs, so
the key that decrypts them lives outside the database (the environment or a
file in the data dir). A wrong or missing key is an operator mistake, so it
surfaces as :class:`SecretKeyError` naming the setting to fix, never as a
cryptography traceback.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from detectflow.core.errors import DetectflowError

__all__ = ["ApiKeyCipher", "SecretKeyError"]

_SETTING = "DETECTFLOW_SECRET_KEY"


class SecretKeyError(DetectflowError):
    """The secret key is malformed, or is not the one the stored api keys were encrypted with."""

    code = "secret_key_error"


class ApiKeyCipher:
    """Encrypts and decrypts provider api keys and camera URLs with one Fernet key."""

    def __init__(self, secret_key: str) -> None:
        try:
            self._fernet = Fernet(
                secret_key.encode() if isinstance(secret_key, str) else secret_key
            )
        except (ValueError, TypeError):
            raise SecretKeyError(
                f"{_SETTING} is not a valid Fernet key (32 url-safe base64-encoded bytes); "
                'generate one with: python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"'
            ) from None

    def encrypt(self, plaintext: str | None) -> str | None:
        if plaintext is None:
            return None
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(
        self,
        token: str | None,
        *,
        what: str = "provider api key",
        fix: str = "the provider's api_key",
    ) -> str | None:
        """``what`` and ``fix`` name the secret in the error (a camera URL, a provider key)."""
        if token is None:
            return None
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            raise SecretKeyError(
                f"cannot decrypt a stored {what}: {_SETTING} (or <data_dir>/secret.key) "
                f"is not the key it was encrypted with; restore the original key, or set "
                f"{fix} again"
            ) from None
