"""The serving command (probes.monitor_cli): decisions, input errors, SIGKILL + resume.

Run as a script, this file is the launcher of the crash test: it imports torch, transformers
and the command once, then forks one child per step (a child may be given a failpoint, where it
kills itself with SIGKILL, or be killed by the launcher with SIGKILL as soon as its decisions
file grows), and prints the children's exit codes (-9: killed).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve()


def _launch(steps: list[dict[str, Any]]) -> list[int]:
    """Fork one child per step running ``monitor_cli.main(argv)``; their exit codes."""
    import signal
    import time

    from probes.monitor_cli import FAILPOINT_ENV, main

    codes = []
    for step in steps:
        if step.get("failpoint"):
            os.environ[FAILPOINT_ENV] = step["failpoint"]
        else:
            os.environ.pop(FAILPOINT_ENV, None)
        out = Path(step["out"])
        start = out.stat().st_size if out.is_file() else 0
        pid = os.fork()
        if pid == 0:  # the child: one run of the command
            code = 1
            try:
                code = main(step["argv"])
            finally:
                os._exit(code)
        if step.get("kill_on_growth"):  # a real SIGKILL from outside, mid-run
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if out.is_file() and out.stat().st_size > start:
                    os.kill(pid, signal.SIGKILL)
                    break
                if os.waitpid(pid, os.WNOHANG) != (0, 0):
                    raise RuntimeError("the child finished before it could be killed")
                time.sleep(0.0005)
        _, status = os.waitpid(pid, 0)
        if step.get("snapshot") and out.is_file():  # what the killed run left behind
            Path(step["snapshot"]).write_bytes(out.read_bytes())
        codes.append(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
    return codes


if __name__ == "__main__":
    import torch

    # imported once, before forking
    import probes.live
    import probes.models  # noqa: F401

    torch.set_num_threads(1)
    print(json.dumps(_launch(json.loads(sys.argv[1]))))
    raise SystemExit(0)

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from _probes_fixtures import conversations, save_tiny_llama  # noqa: E402

from ctd_stats import Delegator, ThresholdCalibration, calibrate_budget_only  # noqa: E402
from probes.live import LatentMonitor  # noqa: E402
from probes.models import load_model  # noqa: E402
from probes.monitor_cli import main  # noqa: E402
from probes.probe_io import FeatureSpec, LatentProbes  # noqa: E402


def _setup(tmp_path: Path, n: int, *, model_hash: str | None = None) -> dict[str, Path]:
    folder = tmp_path / "model"
    if not folder.is_dir():
        save_tiny_llama(str(folder))
    lm = load_model(folder, device="cpu")
    rng = np.random.default_rng(0)
    hidden = int(lm.model.config.hidden_size)
    probes = LatentProbes(
        spec=FeatureSpec(
            model_hash=model_hash or lm.source_hash,
            n_blocks=4,
            hidden_size=hidden,
            layer=2,
            pooling="mean",
            context=10,
        ),
        safety_coef=rng.normal(size=hidden),
        safety_intercept=0.0,
        dv_coef=rng.normal(size=hidden),
        dv_intercept=0.0,
    )
    probes_path = probes.save(tmp_path / "probes.json")
    cal = calibrate_budget_only(rng.normal(size=300), alpha=0.4)
    cal_path = tmp_path / "cal.json"
    cal_path.write_text(cal.to_json())
    requests = tmp_path / "requests.jsonl"
    rows = [{"id": f"r{i}", "inputs": c} for i, c in enumerate(conversations(n))]
    requests.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"model": folder, "probes": probes_path, "cal": cal_path, "input": requests}


def _argv(files: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [
        "--model",
        str(files["model"]),
        "--probes",
        str(files["probes"]),
        "--calibration",
        str(files["cal"]),
        "--input",
        str(files["input"]),
        "--out",
        str(out),
        "--no-progress",
        "--device",
        "cpu",
        *extra,
    ]


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_decisions_equal_the_monitor_in_process(tmp_path: Path, capsys: Any) -> None:
    files = _setup(tmp_path, 9)
    out = tmp_path / "decisions.jsonl"
    assert main(_argv(files, out, "--batch-size", "4", "--generate", "3")) == 0
    assert "9 requests decided now, 9 of 9 in all" in capsys.readouterr().err
    rows = _lines(out)
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(9)]
    assert [r["t"] for r in rows] == list(range(9))
    lm = load_model(files["model"], device="cpu")
    monitor = LatentMonitor(
        lm,
        LatentProbes.from_json(files["probes"].read_text()),
        Delegator(ThresholdCalibration.from_json(files["cal"].read_text())),
        padding="left",
    )
    convs: list[Any] = list(conversations(9))
    res = monitor.decide(monitor.init(), convs, generate=3)
    for r, d in zip(rows, res.decisions, strict=True):
        assert r["delegated"] == d.delegated and r["alarm"] == d.alarm
        assert r["alarm_step"] == d.alarm_step and r["n_tokens"] == d.n_tokens
        np.testing.assert_allclose([r["probe"], r["dv"]], [d.probe, d.dv], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r["statistic"], d.statistic, rtol=1e-9, atol=1e-12)
        assert r["text"] == d.text
    assert 0 < sum(r["delegated"] for r in rows) < 9
    ckpt = json.loads(out.with_name(out.name + ".checkpoint.json").read_text())
    assert ckpt["done"] == 9 and ckpt["out_bytes"] == out.stat().st_size


def test_python_m_probes_monitor_is_the_same_command(tmp_path: Path, capsys: Any) -> None:
    from probes.__main__ import main as probes_main

    files = _setup(tmp_path, 5)
    direct, via = tmp_path / "direct.jsonl", tmp_path / "via.jsonl"
    assert main(_argv(files, direct, "--batch-size", "2")) == 0
    assert probes_main(["monitor", *_argv(files, via, "--batch-size", "2")]) == 0
    assert direct.read_bytes() == via.read_bytes() and len(_lines(via)) == 5
    assert "5 requests decided now" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 3 is not valid JSON"),
        ('{"id": 5}', "line 3 has no field 'inputs'"),
        ('{"inputs": ""}', "line 3: the request has no text"),
        ('{"inputs": [{"role": "user", "content": "  "}]}', "line 3: the request has no text"),
        ('{"inputs": [{"role": "user"}]}', "line 3: inputs: a message must be"),
        ('{"inputs": 7}', "line 3: inputs: expected a string"),
        ("[1, 2]", "line 3 is not a JSON object"),
        ('{"id": true, "inputs": "a"}', "line 3: id must be"),
    ],
)
def test_a_bad_request_line_is_named_and_nothing_is_written(
    tmp_path: Path, capsys: Any, line: str, message: str
) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text('{"inputs": "a"}\n\n' + line + '\n{"inputs": "b"}\n')
    dummy = tmp_path / "x.json"
    dummy.write_text("{}")
    out = tmp_path / "out.jsonl"
    files = {"model": tmp_path / "none", "probes": dummy, "cal": dummy, "input": requests}
    assert main(_argv(files, out)) == 2
    err = capsys.readouterr().err
    assert f"--input: {message}" in err and "Traceback" not in err
    assert not out.exists() and not out.with_name(out.name + ".checkpoint.json").exists()


def test_bad_options_and_a_wrong_model_are_refused(tmp_path: Path, capsys: Any) -> None:
    files = _setup(tmp_path, 4, model_hash="cd" * 32)
    out = tmp_path / "out.jsonl"
    assert main(_argv(files, out, "--batch-size", "0")) == 2
    assert "--batch-size: must be positive" in capsys.readouterr().err
    assert main(_argv(files, out)) == 2
    assert "--probes: model: its sha256" in capsys.readouterr().err
    assert main(_argv({**files, "cal": tmp_path / "missing.json"}, out)) == 2
    assert "--calibration:" in capsys.readouterr().err
    assert main(_argv({**files, "cal": files["probes"]}, out)) == 2  # not a calibration
    assert "--calibration: text:" in capsys.readouterr().err
    edited = tmp_path / "edited.json"
    edited.write_text(
        files["probes"].read_text().replace('"dv_intercept": 0.0', '"dv_intercept": 1.0')
    )
    assert main(_argv({**files, "probes": edited}, out)) == 2
    assert "--probes: text: checksum mismatch" in capsys.readouterr().err
    assert not out.exists()


def test_reruns_decide_nothing_twice_and_resume_appended_requests(
    tmp_path: Path, capsys: Any
) -> None:
    files = _setup(tmp_path, 14)
    whole = tmp_path / "whole.jsonl"
    full_input = files["input"].read_text()
    lines = full_input.splitlines(keepends=True)
    assert main(_argv(files, whole, "--batch-size", "2", "--checkpoint-every", "4")) == 0
    # the same stream in two parts: 10 requests, then 4 appended to the input
    part = tmp_path / "part.jsonl"
    files["input"].write_text("".join(lines[:10]))
    assert main(_argv(files, part, "--batch-size", "2", "--checkpoint-every", "4")) == 0
    capsys.readouterr()
    assert main(_argv(files, part, "--batch-size", "2", "--checkpoint-every", "4")) == 0
    assert "0 requests decided now, 10 of 10 in all" in capsys.readouterr().err
    assert len(_lines(part)) == 10  # nothing decided twice
    files["input"].write_text(full_input)
    assert main(_argv(files, part, "--batch-size", "2", "--checkpoint-every", "4")) == 0
    assert part.read_bytes() == whole.read_bytes()
    capsys.readouterr()
    # another option, an edited input, or an output without checkpoint: refused
    assert main(_argv(files, part, "--batch-size", "3", "--checkpoint-every", "4")) == 2
    assert "--checkpoint:" in capsys.readouterr().err
    files["input"].write_text(full_input.replace("r3", "r33"))
    assert main(_argv(files, part, "--batch-size", "2", "--checkpoint-every", "4")) == 2
    assert "--input: the first 14 requests differ" in capsys.readouterr().err
    stray = tmp_path / "stray.jsonl"
    stray.write_text("something\n")
    assert main(_argv(files, stray)) == 2
    assert "--out:" in capsys.readouterr().err


def test_sigkill_at_any_point_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    """Real SIGKILLs (failpoints at every site, and from outside mid-run), then a resume."""
    files = _setup(tmp_path, 40)
    ref, chain = tmp_path / "ref.jsonl", tmp_path / "chain.jsonl"
    opts = ("--batch-size", "2", "--checkpoint-every", "4", "--generate", "2")
    rng = random.Random(2025)
    sites = ["batch", "line", "flush", "checkpoint", "line", "flush"]
    kills: list[dict[str, Any]] = [
        {"argv": _argv(files, chain, *opts), "out": str(chain), "failpoint": f"{s}:{k}"}
        for s, k in ((s, rng.randint(1, 3)) for s in sites)
    ]
    kills.insert(3, {"argv": _argv(files, chain, *opts), "out": str(chain), "kill_on_growth": 1})
    torn = tmp_path / "torn.jsonl"
    kills[1]["snapshot"] = str(torn)  # the run killed halfway through writing a line
    steps = [
        {"argv": _argv(files, ref, *opts), "out": str(ref)},
        *kills,
        {"argv": _argv(files, chain, *opts), "out": str(chain)},
    ]
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE.parent), os.environ.get("PYTHONPATH", "")]),
    )
    proc = subprocess.run(
        [sys.executable, str(HERE), json.dumps(steps)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert codes[0] == 0 and codes[-1] == 0
    assert codes[1:-1] == [-9] * len(kills), codes  # every kill was a real SIGKILL
    assert chain.read_bytes() == ref.read_bytes()  # none twice, none skipped, same decisions
    # the kill at "line" really left a torn line, which the resume had to cut off
    left = torn.read_bytes()
    assert left and not left.endswith(b"\n") and ref.read_bytes().startswith(left)
    rows = _lines(chain)
    assert [r["t"] for r in rows] == list(range(40))
    assert all("text" in r for r in rows)
