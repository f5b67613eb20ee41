"""``detectflow flow run``: what its help promises about sources."""

from __future__ import annotations

from click.testing import CliRunner

from detectflow.cli.flow import flow_run


def test_the_help_lists_every_source_scheme_and_the_camera_id_option() -> None:
    result = CliRunner().invoke(flow_run, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for scheme in ("sql", "redis://", "mqtt://", "file:///", "rtsp://", "rtsps://", "http(s)://"):
        assert scheme in text, scheme
    assert "cameras" in text and "docs/sources.md" in text
    assert "--camera-id" in text
