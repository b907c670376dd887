"""The command table: every command answers --help, unknown commands and
flags are usage errors (exit 2) that print the usage."""
import pytest

from conftest import run_hscale

COMMANDS = ["gateway", "app", "up", "down", "control", "bench", "status", "shards", "deploy", "plan",
            "version"]


def test_no_args_prints_usage_and_exits_2():
    r = run_hscale()
    assert r.returncode == 2
    assert "usage: hscale <command>" in r.stderr


def test_help_lists_every_command():
    r = run_hscale("help")
    assert r.returncode == 0
    for c in COMMANDS:
        assert f"  {c} " in r.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command):
    r = run_hscale(command, "--help")
    assert r.returncode == 0, r.stderr
    assert f"usage: hscale {command}" in r.stdout


def test_unknown_command():
    r = run_hscale("frobnicate")
    assert r.returncode == 2
    assert "unknown command 'frobnicate'" in r.stderr
    assert "usage: hscale <command>" in r.stderr


def test_help_for_unknown_command():
    r = run_hscale("help", "nope")
    assert r.returncode == 2
    assert "unknown command 'nope'" in r.stderr


def test_version():
    r = run_hscale("version")
    assert r.returncode == 0
    assert r.stdout.startswith("hscale ")
    with open(__file__.rsplit("/tests/", 1)[0] + "/VERSION") as f:
        assert f.read().strip() in r.stdout


@pytest.mark.parametrize("command", ["version", "gateway", "app", "bench"])
def test_unknown_flag_is_usage_error(command):
    r = run_hscale(command, "--no-such-flag")
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--no-such-flag" in r.stderr
    assert "usage: hscale" in r.stderr
