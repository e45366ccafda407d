"""`glmtrt openai` / `glmtrt ui` / `glmtrt demo --ui` at the command line boundary (no server started)."""
from __future__ import annotations

from click.testing import CliRunner

from glmtrt.cli import main


def test_openai_refuses_a_public_host_without_a_key():
    r = CliRunner().invoke(main, ["openai", "--host", "0.0.0.0", "--triton", "127.0.0.1:1"])
    assert r.exit_code == 2
    assert "--api-key" in r.output and "--allow-unauthenticated" in r.output and "Traceback" not in r.output


def test_commands_are_listed_and_validated():
    r = CliRunner().invoke(main, ["--help"])
    assert "openai" in r.output and " ui " in r.output
    r = CliRunner().invoke(main, ["openai", "--port", "70000"])
    assert r.exit_code == 2 and "70000" in r.output
    r = CliRunner().invoke(main, ["ui", "--triton", "nonsense"])
    assert r.exit_code == 2 and "host:port" in r.output
    r = CliRunner().invoke(main, ["demo", "--ui", "--no-serve"])
    assert r.exit_code == 2 and "--ui needs the server" in r.output
