"""benchmarks/gpu_check.py on a machine without a GPU: every GPU step skipped with its reason, exit
0, and no JSON unless one was asked for (so no CPU-only file looks like a GPU result). The check
itself runs on a GPU machine (``bash benchmarks/gpu_check.sh``); here only its CPU side is tested.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.measure.backends import cuda_available

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"

pytestmark = pytest.mark.skipif(
    cuda_available(), reason="checks the run without a GPU; with one the script measures"
)


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules["gpu_check"]


def test_without_a_gpu_every_gpu_step_is_skipped_and_the_json_says_gpu_null(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), "--skip-tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["gpu"] is None and doc["ok"] is True
    steps = {s["name"]: s for s in doc["steps"]}
    assert list(steps) == [
        "onnxruntime",
        "gpu facts",
        "pytest -m gpu",
        "gpu energy",
        "profile on CUDA",
        "fp16 search",
        "serve on CUDA",
    ]
    for step in doc["steps"]:
        assert step["status"] in ("ok", "skipped"), step
        if step["gpu"]:
            assert step["status"] == "skipped" and step["reason"], step
    gpu_steps = [s for s in doc["steps"] if s["gpu"] and s["name"] != "pytest -m gpu"]
    assert all(s["reason"].startswith("no CUDA GPU") for s in gpu_steps)
    assert steps["pytest -m gpu"]["reason"] == "--skip-tests given"
    assert "the runtime serves on CPU only (serving/models.py)" in steps["serve on CUDA"]["reason"]
    for name in steps:
        assert name in proc.stdout  # the step table


def test_without_a_gpu_and_without_out_no_json_is_written(gpu_check, tmp_path, monkeypatch, capsys):
    default = tmp_path / "results" / "gpu_check.json"
    monkeypatch.setattr(gpu_check, "DEFAULT_OUT", default)
    assert gpu_check.main(["--skip-tests"]) == 0
    assert not default.exists()
    assert "no JSON written" in capsys.readouterr().out


def test_gpu_tests_are_counted_from_pytest_and_skip_without_a_gpu(gpu_check):
    machine = gpu_check.probe()
    with pytest.raises(gpu_check.Skip) as skipped:
        gpu_check.gpu_tests(machine, skip_tests=False)
    data = skipped.value.data
    assert str(skipped.value).startswith("no CUDA GPU")
    assert data["passed"] == data["failed"] == data["errors"] == 0 and data["skipped"] >= 1
    assert "tests/workbench/measure/test_profiling.py" in data["files"]
    assert all(s["reason"] for s in data["skips"])


BOTH_ORT = {"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.31.1"}


def installed(versions):
    """A stand-in for ``importlib.metadata.version`` that knows only ``versions``."""

    def version(name):
        if name not in versions:
            raise importlib.metadata.PackageNotFoundError(name)
        return versions[name]

    return version


def test_an_onnxruntime_that_does_not_import_fails_its_step(gpu_check, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    monkeypatch.setattr(gpu_check.metadata, "version", installed({"onnxruntime": "1.32.0"}))
    machine = gpu_check.probe()
    step = gpu_check.run_step("onnxruntime", False, lambda: gpu_check.onnxruntime_step(machine))
    assert step.status == "failed" and "does not import" in step.reason
    assert "#19" not in step.reason and not machine.ort_cuda


def test_with_both_packages_a_broken_onnxruntime_is_reported_as_issue_19(gpu_check, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as after #19's overwrite
    monkeypatch.setattr(gpu_check.metadata, "version", installed(BOTH_ORT))
    machine = gpu_check.probe()
    step = gpu_check.run_step("onnxruntime", False, lambda: gpu_check.onnxruntime_step(machine))
    assert step.status == "failed" and "known issue #19" in step.reason
    assert not machine.ort_cuda and "#19" in machine.ort_cuda_reason


def test_both_onnxruntime_packages_of_issue_19_warn_here_and_fail_on_a_gpu(gpu_check, monkeypatch):
    monkeypatch.setattr(gpu_check.metadata, "version", installed(BOTH_ORT))
    machine = gpu_check.probe()
    assert "onnxruntime 1.32.0 and onnxruntime-gpu 1.31.1" in machine.ort_shadowed
    here = gpu_check.run_step("onnxruntime", False, lambda: gpu_check.onnxruntime_step(machine))
    assert here.status == "ok" and "known issue #19" in here.reason
    with_gpu = dataclasses.replace(machine, cuda=True)
    on_gpu = gpu_check.run_step("onnxruntime", False, lambda: gpu_check.onnxruntime_step(with_gpu))
    assert on_gpu.status == "failed" and "without CUDAExecutionProvider" in on_gpu.reason
    assert with_gpu.ort_cuda_reason == machine.ort_shadowed


def test_a_step_that_raises_fails_alone_with_one_line(gpu_check):
    def boom():
        raise RuntimeError("first line\nsecond line")

    step = gpu_check.run_step("boom", True, boom)
    assert (step.status, step.reason) == ("failed", "RuntimeError: first line")


@pytest.mark.slow
def test_the_serve_drive_answers_on_the_cpu_bundle(gpu_check):
    """The drive the GPU step runs once the runtime can serve on CUDA, here on the CPU."""
    data = gpu_check.drive_bundle("digits-mlp", seconds=1.0)
    assert data["model"] == "digits-mlp" and data["refused_503"] == 0
    assert data["requests_per_s"]["value"] > 0 and data["requests_per_s"]["method"] == "measured"


def test_steps_not_begun_within_the_budget_are_skipped(gpu_check, tmp_path):
    out = tmp_path / "gpu_check.json"
    assert gpu_check.main(["--skip-tests", "--budget-s", "0", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["complete"] is True
    assert all(s["reason"] == "the 0 s budget is spent" for s in doc["steps"])
