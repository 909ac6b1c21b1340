"""``workbench batching`` run as a user runs it: a real subprocess, a real ONNX file, real store."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from tests.workbench.cli.test_cli import cli
from workbench.measure.store import RunStore


@pytest.fixture
def tiny_onnx(tmp_path):
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 4)).eval()
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(
        module,
        (torch.randn(1, 32),),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
        dynamo=False,
    )
    return str(path)


def test_sweep_simulate_and_right_size(tiny_onnx, db_path):
    out = cli(
        "batching", tiny_onnx, "-n", "1", "-n", "4", "--max-seconds", "0.2", "--threads", "1",
        "--max-batch-rows", "4", "--rate", "500", "--duration-s", "4", "--slo-p99-ms", "20",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "batch sweep" in out.stdout and "share of max" in out.stdout
    assert "predicted for" in out.stdout and "mean batch" in out.stdout
    assert "cheapest hardware for 500 req/s" in out.stdout
    assert re.search(r"best: \d+ x \S+, .* per 1M inferences; binding constraint: \w+", out.stdout)
    runs = RunStore(db_path).runs(kind="profile")
    assert sorted(r.config["batch_size"] for r in runs) == [1, 4]
    # the stored sweep again, measuring nothing, with the old spelling of --max-batch-rows
    again = cli("batching", "ignored", "--sweep-id", runs[0].sweep_id, "--max-batch", "4")
    assert again.returncode == 0, again.stderr
    assert "warning: --max-batch is deprecated; use --max-batch-rows" in again.stderr
    assert "Traceback" not in again.stderr
    assert len(RunStore(db_path).runs(kind="profile")) == 2


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--max-batch-rows", "0"], "max_batch_rows=0 must be a whole number >= 1"),
        (["--max-delay-ms", "-1"], "max_delay_ms=-1.0 must be >= 0"),
        (["--max-queue-rows", "0"], "max_queue_rows=0 must be a whole number >= 1"),
        (["--sweep-id", "nope"], "no profile runs with sweep id 'nope'"),
        (["-n", "1", "-n", "8"], "--max-batch-rows 32 is above the largest batch size measured"),
    ],
)
def test_bad_input_is_one_clear_line(args, expected, db_path):
    out = cli("batching", "digits-mlp", *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stderr.startswith("error:") and expected in out.stderr.replace("\n", " ")
    assert "Traceback" not in out.stderr + out.stdout


def test_an_old_spelling_still_works_and_says_the_new_one(db_path):
    out = cli("batching", "digits-mlp", "--queue-limit", "0")  # refused before measuring
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.splitlines()
    assert lines[0] == "warning: --queue-limit is deprecated; use --max-queue-rows"
    assert lines[1].startswith("error:") and "max_queue_rows=0" in out.stderr


def _defaults(command: str) -> dict[str, object]:
    """Each option's default in ``workbench COMMAND``, keyed by its flag."""
    from typer.main import get_command

    from workbench.cli import app

    params = get_command(app).commands[command].params
    return {opt: p.default for p in params for opt in p.opts if opt.startswith("--")}


def test_batching_plans_with_the_knobs_and_defaults_that_export_ships():
    from serving.manifest import Batching, Threads

    batching, export = _defaults("batching"), _defaults("export")
    shared = {
        "--max-batch-rows": Batching.max_batch_rows,
        "--max-delay-ms": Batching.max_delay_ms,
        "--max-queue-rows": Batching.max_queue_rows,
        "--instances": Threads.instances,
    }
    assert {k: batching[k] for k in shared} == {k: export[k] for k in shared} == shared
    assert shared == {"--max-batch-rows": 32, "--max-delay-ms": 2.0, "--max-queue-rows": 1024,
                      "--instances": 1}  # fmt: skip
