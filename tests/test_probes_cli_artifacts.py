"""``python -m probes artifacts --jobs 2``: the stage commands it launches (no model is loaded)."""

from __future__ import annotations

import sys

import pytest

from probes import __main__ as cli


def test_without_option_drops_the_option_and_its_value():  # type: ignore[no-untyped-def]
    argv = ["artifacts", "--jobs", "2", "--limit", "3", "--threads=4", "--stage", "all"]
    assert cli._without_option(argv, "--jobs") == [
        "artifacts",
        "--limit",
        "3",
        "--threads=4",
        "--stage",
        "all",
    ]
    assert cli._without_option(argv, "--threads") == [
        "artifacts",
        "--jobs",
        "2",
        "--limit",
        "3",
        "--stage",
        "all",
    ]


def test_jobs_2_runs_the_stages_single_threaded(monkeypatch):  # type: ignore[no-untyped-def]
    import subprocess

    launched: list[list[str]] = []

    class _Proc:
        def __init__(self, cmd: list[str]) -> None:
            launched.append(cmd)

        def wait(self) -> int:
            return 0

    def call(cmd: list[str]) -> int:
        launched.append(cmd)
        return 0

    monkeypatch.setattr(subprocess, "Popen", _Proc)
    monkeypatch.setattr(subprocess, "call", call)
    argv = ["artifacts", "--jobs", "2", "--threads", "2", "--limit", "3", "--reverse-files"]
    assert cli._run_stages_side_by_side(argv) == 0
    stages = [cmd[cmd.index("--stage") + 1] for cmd in launched]
    assert stages == ["activations", "embeddings", "experts", "activations"]
    for cmd in launched:
        assert cmd[:3] == [sys.executable, "-m", "probes"]
        assert "--jobs" not in cmd and cmd.count("--threads") == 1
        assert cmd[cmd.index("--threads") + 1] == "1" and "--limit" in cmd
    assert ["--reverse-files" in cmd for cmd in launched] == [False, False, False, True]


def test_jobs_must_be_1_or_2():  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["artifacts", "--jobs", "3"])
