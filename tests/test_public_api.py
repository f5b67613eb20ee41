"""The names a plugin author imports from ``detectflow`` are a promise."""

from __future__ import annotations

import importlib
import pkgutil

import detectflow

EXPECTED = {
    "BBox",
    "Detection",
    "DetectionEvent",
    "DetectflowError",
    "Frame",
    "FrameResult",
    "FunctionAdapter",
    "InvalidFrameError",
    "NormalizationError",
    "PermanentProviderError",
    "PluginError",
    "ProbeResult",
    "ProviderAdapter",
    "ProviderConfig",
    "ProviderError",
    "QueueItem",
    "RawDetection",
    "Settings",
    "TransientProviderError",
    "__version__",
    "hookimpl",
}


def test_the_exported_names_are_exactly_the_public_api():
    assert set(detectflow.__all__) == EXPECTED
    for name in EXPECTED:
        assert hasattr(detectflow, name), name


def test_every_core_module_declares_all():
    import detectflow.core as core

    for info in pkgutil.iter_modules(core.__path__):
        module = importlib.import_module(f"detectflow.core.{info.name}")
        assert isinstance(getattr(module, "__all__", None), list), info.name


def test_core_imports_no_io_library():
    """core is pure: it must not import database, network or dataflow libraries."""
    import ast
    from pathlib import Path

    forbidden = {
        "sqlalchemy",
        "psycopg",
        "redis",
        "httpx",
        "aiohttp",
        "grpc",
        "paho",
        "bytewax",
        "starlette",
        "uvicorn",
        "socket",
        "requests",
        "alembic",
    }
    core_dir = Path(detectflow.__file__).parent / "core"
    for path in core_dir.glob("*.py"):
        tree = ast.parse(path.read_text())
        # Imports under `if TYPE_CHECKING:` never run: annotations may name a
        # library's types (a hook returning a Bytewax source) without loading it.
        type_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
            for stmt in node.body
            for inner in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
