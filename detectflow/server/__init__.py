"""The Starlette server: REST routes and the WebSocket hub over the store."""

from detectflow.server.app import create_app

__all__ = ["create_app"]
