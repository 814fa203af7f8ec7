"""``python -m probes artifacts``: options from ArtifactConfig; the ``--jobs 2`` stage commands."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from probes import __main__ as cli
from probes.artifact_config import ArtifactConfig, config_argv


def _config(argv: list[str]) -> ArtifactConfig:
    return cli.artifact_config(cli._parser().parse_args(argv))


def test_defaults_are_the_config_defaults() -> None:
    assert _config(["artifacts"]) == ArtifactConfig()


def test_config_argv_round_trips() -> None:
    cfg = ArtifactConfig(
        out_dir=Path("/tmp/out"),
        name="x",
        work_dir=Path("/tmp/work"),
        token_limit=64,
        contexts=(16, 64),
        expert_token_limit=32,
        candidate_layers=(1, 3),
        batch_size=2,
        shard_size=5,
        cap_per_group=7,
        limit=3,
        experts=("gemma3",),
        expert_prompt="single_word",
        crossfit_folds=3,
        stage="experts",
        reverse_files=True,
        progress=False,
    )
    assert _config(config_argv(cfg)) == cfg
    assert _config(config_argv(ArtifactConfig())) == ArtifactConfig()


def test_jobs_2_runs_the_stages_single_threaded(monkeypatch: pytest.MonkeyPatch) -> None:
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
    argv = ["artifacts", "--jobs", "2", "--threads", "2", "--limit", "3", "--no-progress"]
    cfg = _config(argv)
    assert cli._run_stages_side_by_side(cfg) == 0
    assert launched == cli.stage_commands(cfg)
    expected = [("activations", False), ("embeddings", False), ("experts", False)]
    expected.append(("activations", True))
    for cmd, (stage, reverse) in zip(launched, expected, strict=True):
        assert cmd[:3] == [sys.executable, "-m", "probes"]
        assert cmd[-2:] == ["--threads", "1"] and cmd.count("--threads") == 1
        assert "--jobs" not in cmd
        # the child builds exactly the parent's configuration, for its one stage
        child = _config(cmd[3:])
        assert child == dataclasses.replace(cfg, stage=stage, reverse_files=reverse)
        assert child.limit == 3 and not child.progress


def test_a_failing_stage_stops_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    class _Proc:
        def __init__(self, cmd: list[str]) -> None:
            pass

        def wait(self) -> int:
            return 0

    def call(cmd: list[str]) -> int:
        calls.append(cmd)
        return 3

    monkeypatch.setattr(subprocess, "Popen", _Proc)
    monkeypatch.setattr(subprocess, "call", call)
    assert cli._run_stages_side_by_side(ArtifactConfig(limit=2)) == 3
    assert len(calls) == 1  # embeddings failed: the experts and the second activations not run


def test_jobs_must_be_1_or_2() -> None:
    with pytest.raises(SystemExit):
        cli._parser().parse_args(["artifacts", "--jobs", "3"])
