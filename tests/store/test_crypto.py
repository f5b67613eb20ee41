from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from detectflow.store import Database, SecretKeyError
from detectflow.store.crypto import ApiKeyCipher
from detectflow.store.tables import detection_provider_configs
from tests.store.builders import provider

_KEY = Fernet.generate_key().decode()


def test_api_key_is_not_stored_in_plaintext(db: Database) -> None:
    config = db.create_provider(provider(api_key="top-secret-key"))
    with db.engine.connect() as conn:
        raw = conn.execute(
            select(detection_provider_configs.c.api_key_encrypted).where(
                detection_provider_configs.c.id == config.id
            )
        ).scalar_one()
    assert raw is not None
    assert "top-secret-key" not in raw
    assert db.get_provider(config.id) is not None


def test_no_api_key_is_stored_as_null(db: Database) -> None:
    config = db.create_provider(provider(api_key=None))
    with db.engine.connect() as conn:
        raw = conn.execute(select(detection_provider_configs.c.api_key_encrypted)).scalar_one()
    assert raw is None
    stored = db.get_provider(config.id)
    assert stored is not None
    assert stored.api_key is None


def test_reading_with_the_wrong_key_names_the_setting(database_url: str) -> None:
    writer = Database(database_url, secret_key=Fernet.generate_key().decode())
    writer.upgrade()
    config = writer.create_provider(provider())
    writer.dispose()
    reader = Database(database_url, secret_key=Fernet.generate_key().decode())
    try:
        with pytest.raises(SecretKeyError, match="DETECTFLOW_SECRET_KEY"):
            reader.get_provider(config.id)
    finally:
        reader.dispose()


@pytest.mark.parametrize("bad", ["", "short", "x" * 44, "not base64 at all!!"])
def test_a_malformed_secret_key_is_refused_with_a_clear_error(bad: str) -> None:
    with pytest.raises(SecretKeyError, match="DETECTFLOW_SECRET_KEY is not a valid Fernet key"):
        ApiKeyCipher(bad)


def test_a_corrupt_token_is_a_secret_key_error() -> None:
    with pytest.raises(SecretKeyError):
        ApiKeyCipher(_KEY).decrypt("garbage")


@given(st.text())
def test_encrypt_then_decrypt_round_trips(plaintext: str) -> None:
    cipher = ApiKeyCipher(_KEY)
    token = cipher.encrypt(plaintext)
    assert token is not None
    assert cipher.decrypt(token) == plaintext
