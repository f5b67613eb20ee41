from __future__ import annotations

import detectflow.store


def test_public_api_is_exported() -> None:
    assert set(detectflow.store.__all__) == {
        "Bus",
        "Cache",
        "Database",
        "DatabaseURLError",
        "SecretKeyError",
        "Subscription",
        "load_or_create_secret_key",
        "open_database",
    }
    for name in detectflow.store.__all__:
        assert getattr(detectflow.store, name) is not None


def test_store_modules_declare_all() -> None:
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(detectflow.store.__path__):
        if info.name == "migrations":
            continue
        module = importlib.import_module(f"detectflow.store.{info.name}")
        assert isinstance(getattr(module, "__all__", None), list), info.name
