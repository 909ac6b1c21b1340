"""``workbench report``: the papermill gate passes a candidate like its baseline and fails one
with a real, injected regression.

How the regression is made: the candidate is a copy of digits-cnn whose every forward pass also
runs 16 extra 512x512 matrix multiplications (``--inject-extra-matmuls 16``, outputs unchanged);
it is profiled for real, so its throughput falls (cost per 1M predictions rises) and its latency
grows. Nothing is faked: both verdicts come from measured runs. The thresholds are wide (cost
+100 %, p99 +500 %) because this is a shared 2-core machine where p99 of an unchanged model moves
by a lot; the injected work costs far more than that.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("papermill")

from workbench.cli.app import main
from workbench.measure.profiling import profile

REPO = Path(__file__).resolve().parents[2]
COMMON = ["--threads", "1", "--iterations", "3000", "--max-seconds", "1.0",
          "--max-cost-increase-pct", "100", "--max-p99-increase-pct", "500"]  # fmt: skip


@pytest.fixture
def kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), *paths]))


def test_gate_passes_without_and_fails_with_injected_regression(
    tmp_path: Path, kernel_env: None, capsys: pytest.CaptureFixture
) -> None:
    base = profile(
        "digits-cnn", batch_size=1, threads=1, iterations=3000, max_seconds=1.0,
        energy=True, energy_min_seconds=1.0, idle_seconds=0.3, operators=False,
    )  # fmt: skip
    rid = str(base.run_id)

    ok = tmp_path / "ok" / "report.html"
    code = main(["report", "digits-cnn", "--baseline-run-id", rid, "--out", str(ok), *COMMON])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "gate passed" in out.out and str(ok) in out.out.replace("\n", "")
    verdict = json.loads(ok.with_suffix(".json").read_text())
    assert verdict["passed"] is True and verdict["baseline_run_id"] == base.run_id
    assert 'class="verdict pass"' in ok.read_text()

    bad = tmp_path / "bad" / "report.html"
    code = main(["report", "digits-cnn", "--baseline-run-id", rid, "--out", str(bad), *COMMON,
                 "--inject-extra-matmuls", "16"])  # fmt: skip
    out = capsys.readouterr()
    assert code == 1
    message = out.err.strip()
    assert message.startswith("error: regression:") and "cost per 1M predictions" in message
    assert f"report: {bad}" in message.replace("\n", "")
    verdict = json.loads(bad.with_suffix(".json").read_text())
    assert verdict["passed"] is False
    cost = next(c for c in verdict["checks"] if c["metric"] == "cost per 1M predictions")
    assert cost["change_pct"] > 100 and cost["passed"] is False
    assert 'class="verdict fail"' in bad.read_text()
    assert bad.with_suffix(".ipynb").is_file()  # the executed notebook, for the record


def test_report_refuses_a_missing_notebook(tmp_path: Path, capsys) -> None:
    code = main(["report", "--notebook", str(tmp_path / "nope.ipynb")])
    assert code == 2
    assert "--notebook" in capsys.readouterr().err


def test_report_refuses_a_baseline_from_another_host_unless_allowed(
    tmp_path: Path, kernel_env: None, capsys: pytest.CaptureFixture
) -> None:
    """The baseline is a real profile run stored again as if timed on a 16-core machine: the
    report refuses it naming both host fingerprints, and ``--allow-other-host`` warns instead."""
    from workbench.measure.store import RunStore
    from workbench.report.host import host_fingerprint

    base = profile(
        "digits-cnn", batch_size=1, threads=1, iterations=500, max_seconds=0.3,
        energy=True, energy_min_seconds=0.3, idle_seconds=0.1, operators=False,
    )  # fmt: skip
    with RunStore() as store:
        run = store.get(base.run_id)
        other = {**run.environment, "logical_cores": 16, "cpu_model": "AMD EPYC 7B13"}
        rid = store.add("profile", model=run.model, fingerprint=run.fingerprint,
                        config=run.config, metrics=run.metrics, environment=other,
                        details=run.details)  # fmt: skip
    quick = ["--threads", "1", "--iterations", "500", "--max-seconds", "0.3", "--repeats", "1",
             "--max-cost-increase-pct", "100", "--max-p99-increase-pct", "500"]  # fmt: skip
    out = tmp_path / "report.html"
    code = main(["report", "digits-cnn", "--baseline-run-id", str(rid), "--out", str(out), *quick])
    err = capsys.readouterr().err.replace("\n", "")
    assert code == 2
    assert host_fingerprint(other) in err and host_fingerprint(run.environment) in err
    assert "--allow-other-host" in err

    code = main(["report", "digits-cnn", "--baseline-run-id", str(rid), "--out", str(out), *quick,
                 "--allow-other-host"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "WARNING: baseline and candidate ran on different hosts" in captured.err
    verdict = json.loads(out.with_suffix(".json").read_text())
    assert verdict["host"]["other_host_allowed"] is True and verdict["host"]["same_host"] is False
    assert 'id="host-warning"' in out.read_text()
