"""What a plain ``pip install detectflow`` brings, without any extra."""

from __future__ import annotations

from importlib import metadata


def _plain_requirements() -> set[str]:
    names = set()
    for requirement in metadata.requires("detectflow") or []:
        name, _, marker = requirement.partition(";")
        if "extra ==" in marker:
            continue
        for stop in "[<>=!~ ":
            name = name.split(stop)[0]
        names.add(name.strip().lower())
    return names


def test_a_plain_install_requires_a_websocket_library_for_uvicorn() -> None:
    # uvicorn serves WebSockets only with one of these installed; the guide's
    # /ws endpoint would refuse every client of a plain install otherwise.
    assert _plain_requirements() & {"websockets", "wsproto"}
