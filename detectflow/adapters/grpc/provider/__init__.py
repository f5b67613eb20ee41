"""Versioned packages of the detectflow provider protocol (generated code)."""

__all__: list[str] = []
