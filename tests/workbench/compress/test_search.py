import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.compress.registry import custom_variant
from workbench.compress.search.candidates import pareto_frontier
from workbench.compress.search.constraints import Constraints, parse_fraction, parse_ms
from workbench.compress.search.recommendation import recommend
from workbench.compress.search.runner import optimize
from workbench.errors import ConfigError, ConstraintError
from workbench.measure.backends import logical_cores
from workbench.measure.store import RunStore
from workbench.models.datasets import digits_split

VARIANTS = ["ort-fp32", "ort-int8-dynamic-per-channel", "torch-int8-dynamic"]
FAST = {"batch_sizes": [1, 16], "threads": [1], "measure_seconds": 0.15, "progress": False}


def _broken(module):
    raise RuntimeError("this conversion always fails")


def _rounded(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.round(p * 4) / 4)  # coarse weights: a visible quality drop
    return module


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("store") / "runs.sqlite")
    extra = [custom_variant(_broken, name="broken"), custom_variant(_rounded, name="rounded")]
    result = optimize(
        "digits-mlp", variants=VARIANTS, extra_variants=extra, strategy="grid", store=db, **FAST
    )
    return result, db


def test_units_are_parsed_and_bad_values_say_how_to_write_them():
    assert parse_fraction("1%") == 0.01 and parse_fraction("0.5 %") == 0.005
    assert parse_fraction(0.02) == 0.02 and parse_fraction("0.01") == 0.01
    assert parse_ms("20ms") == 20 and parse_ms("0.5s") == 500 and parse_ms("800us") == 0.8
    assert parse_ms(15) == 15.0
    with pytest.raises(ConfigError, match="did you mean 2%"):
        parse_fraction("2")
    for bad in ("-1%", "abc", "101%"):
        with pytest.raises(ConfigError, match="max_quality_drop"):
            parse_fraction(bad)
    for bad in ("fast", "0ms", "-5ms", "20 parsecs"):
        with pytest.raises(ConfigError, match="slo_p99"):
            parse_ms(bad)
    with pytest.raises(ConfigError, match="memory_cap_mb"):
        Constraints(memory_cap_mb=-1)


def test_pareto_frontier_keeps_only_the_undominated():
    frame = pd.DataFrame(
        {"q": [0.0, 0.0, 0.01, 0.02], "lat": [2.0, 1.0, 0.5, 0.6], "e": [1.0, 1.0, 0.4, 0.3]}
    )
    assert pareto_frontier(frame, ["q", "lat", "e"]).index.tolist() == [1, 2, 3]


def test_every_measured_variant_is_judged_on_held_out_data_and_stored(grid):
    result, db = grid
    frame = result.to_frame()
    measured = {c.name for c in result.candidates if c.profile is not None}
    assert measured == {*VARIANTS, "rounded", "torch-fp32"}
    n_test = len(digits_split(0).y_test)
    for c in result.candidates:
        assert c.quality.items == n_test and c.quality.metric == "accuracy"
    rounded = frame[frame.variant == "rounded"].iloc[0]
    assert rounded.quality_drop > 0  # the coarse weights cost accuracy, measured
    with RunStore(db) as store:
        rows = store.runs(kind="variant", sweep_id=result.search_id)
        summary = store.runs(kind="optimize", sweep_id=result.search_id)
    assert len(rows) == len(frame)
    for row in rows:
        m = row.metrics
        assert m["variant"] == row.config["variant"] and m["quality_method"] == "measured"
        assert m["quality_items"] == n_test and m["energy_method"] in ("measured", "estimated")
        assert m["memory_method"].startswith("estimated") and m["energy_j_per_item"] > 0
    assert summary[0].metrics["recommended_variant"] == result.recommendation.candidate.name
    assert summary[0].details["skipped"] == result.skipped


def test_a_variant_that_fails_to_convert_is_skipped_with_its_reason(grid):
    result, _ = grid
    broken = [s for s in result.skipped if s["variant"] == "broken"]
    assert broken == [
        {
            "variant": "broken",
            "stage": "build",
            "reason": "RuntimeError: this conversion always fails",
        }
    ]
    assert len(result.to_frame()) == 2 * (len(VARIANTS) + 1) + 1  # the search went on


def test_baseline_is_fp32_torch_eager_batch_one(grid):
    result, _ = grid
    base = result.baseline
    assert (base.name, base.batch_size, base.threads) == ("torch-fp32", 1, logical_cores())
    assert base.measure_seconds == FAST["measure_seconds"] and base.quality_drop == 0
    rec = result.recommendation
    assert rec.items_per_joule_gain == pytest.approx(
        rec.candidate.items_per_joule / base.items_per_joule
    )
    assert "items per joule" in rec.reason and rec.candidate.label in rec.reason


def _constraint_sets(candidates):
    p99 = np.array([c.latency_ms_p99 for c in candidates])
    mem = np.array([c.memory_mb for c in candidates])
    return [
        Constraints(max_quality_drop=0.0),
        Constraints(max_quality_drop="1%", slo_p99_ms=float(np.median(p99))),
        Constraints(max_quality_drop=0.5, memory_cap_mb=float(np.median(mem))),
        Constraints(
            max_quality_drop=0.001,
            slo_p99_ms=float(np.percentile(p99, 75)),
            memory_cap_mb=float(np.percentile(mem, 75)),
        ),
    ]


@pytest.mark.parametrize("objective", ["energy", "throughput", "latency", "size"])
def test_the_recommendation_respects_every_constraint(grid, objective):
    result, _ = grid
    measured = [c for c in result.candidates if c.profile is not None]
    for constraints in _constraint_sets(measured):
        try:
            rec = recommend(measured, constraints, objective, result.baseline)
        except ConstraintError:
            assert not any(all(ch.met for ch in constraints.checks(c)) for c in measured)
            continue
        best = rec.candidate
        assert best.quality_drop <= constraints.max_quality_drop
        if constraints.slo_p99_ms is not None:
            assert best.latency_ms_p99 <= constraints.slo_p99_ms
        if constraints.memory_cap_mb is not None:
            assert best.memory_mb <= constraints.memory_cap_mb
        feasible = [c for c in measured if all(ch.met for ch in constraints.checks(c))]
        assert best.objective(objective) == min(c.objective(objective) for c in feasible)
        assert all(ch.met for ch in rec.checks)


def test_constraints_nothing_meets_name_the_constraint_and_the_closest_candidate(grid):
    result, _ = grid
    measured = [c for c in result.candidates if c.profile is not None]
    fastest = min(measured, key=lambda c: c.latency_ms_p99)
    with pytest.raises(ConstraintError) as info:
        recommend(measured, Constraints(slo_p99_ms="1us"))
    text = str(info.value)
    assert "no configuration meets p99 SLO 0.001 ms" in text
    assert f"Closest candidate: {fastest.label}" in text and "set the p99 SLO to" in text
    drop = Constraints(max_quality_drop=0.0, slo_p99_ms=fastest.latency_ms_p99 * 0.999)
    with pytest.raises(ConstraintError, match="p99 SLO"):
        recommend(measured, drop)


def test_successive_halving_measures_survivors_longer(tmp_path):
    result = optimize(
        "digits-mlp",
        variants=VARIANTS,
        strategy="halving",
        store=False,
        batch_sizes=[1, 8, 32],
        threads=[1],
        measure_seconds=0.3,
        progress=False,
    )
    frame = result.to_frame()
    assert len(frame) == 3 * len(VARIANTS) + 1
    full = frame[frame.measure_seconds == 0.3]
    assert 1 <= len(full) - 1 <= 3  # the survivors (besides the baseline)
    assert set(frame.rung) >= {0, 2}
    rec = result.recommendation.candidate
    assert rec.measure_seconds == 0.3


def test_stopping_keeps_what_finished(tmp_path):
    db = str(tmp_path / "runs.sqlite")
    calls = {"n": 0}

    def stop_after_a_few():
        calls["n"] += 1
        return calls["n"] > len(VARIANTS) + 4  # builds, then a few measurements

    result = optimize(
        "digits-mlp", variants=VARIANTS, strategy="grid", store=db, stop=stop_after_a_few, **FAST
    )
    assert result.stopped == "stopped by the caller"
    measured = result.to_frame()
    assert 1 <= len(measured) < 2 * len(VARIANTS) + 1
    with RunStore(db) as store:
        assert len(store.runs(kind="variant", sweep_id=result.search_id)) == len(measured)
    assert result.recommendation is not None or result.unmet

    spent = optimize("digits-mlp", variants=VARIANTS, budget_s=1e-3, store=False, **FAST)
    assert spent.stopped.startswith("budget") and spent.to_frame().empty
    assert "no configuration was measured" in spent.unmet


@pytest.mark.parametrize(
    ("setting", "match"),
    [
        ({"strategy": "random"}, "strategy"),
        ({"batch_sizes": [0]}, "batch size"),
        ({"threads": [10_000]}, "threads"),
        ({"objective": "cost"}, "objective"),
        ({"max_quality_drop": "2"}, "did you mean 2%"),
        ({"variants": ["no-such-variant"]}, "unknown variant"),
        ({"budget_s": 0}, "budget_s"),
    ],
)
def test_bad_search_settings_are_refused(setting, match):
    with pytest.raises(ConfigError, match=match):
        optimize("digits-mlp", **{"store": False, "progress": False, **setting})


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=300,
    )


def test_cli_optimize_recommends_and_refuses_what_nothing_meets(db_path):
    common = [
        "-v",
        "ort-fp32",
        "-v",
        "ort-int8-dynamic",
        "-n",
        "4",
        "-t",
        "1",
        "--measure-seconds",
        "0.1",
        "--db",
        db_path,
    ]
    ok = _cli("optimize", "digits-mlp", "--max-quality-drop", "1%", "--slo-p99-ms", "50", *common)
    assert ok.returncode == 0, ok.stderr
    assert "recommended:" in ok.stdout and "Pareto frontier" in ok.stdout
    unmet = _cli("optimize", "digits-mlp", "--slo-p99-ms", "0.001", *common)
    assert unmet.returncode == 2
    assert "no configuration meets p99 SLO" in unmet.stderr and "Closest candidate" in unmet.stderr
    bad = _cli("optimize", "digits-mlp", "--max-quality-drop", "lots")
    assert bad.returncode == 2 and "--max-quality-drop='lots'" in bad.stderr
    with RunStore(db_path) as store:
        assert len(store.runs(kind="optimize")) == 2


def test_cli_optimizes_an_onnx_file_judged_on_the_users_held_out_data(tmp_path, db_path):
    from workbench.models import load_model

    onnx_path = load_model("digits-mlp").onnx()
    split = digits_split(0)
    data = tmp_path / "held_out.npz"
    np.savez(data, input=split.X_test, labels=split.y_test)
    args = [
        "optimize",
        str(onnx_path),
        "-v",
        "ort-fp32",
        "-v",
        "ort-int8-dynamic-per-channel",
        "-v",
        "torch-int8-dynamic",
        "-n",
        "8",
        "-t",
        "1",
        "--measure-seconds",
        "0.1",
        "--db",
        db_path,
    ]
    ok = _cli(*args, "--held-out", str(data))
    assert ok.returncode == 0, ok.stderr
    assert "recommended:" in ok.stdout
    assert "skipped torch-int8-dynamic (build)" in ok.stdout  # an ONNX file has no torch form
    with RunStore(db_path) as store:
        rows = store.runs(kind="variant")
    assert {r.metrics["quality_items"] for r in rows} == {len(split.y_test)}
    missing = _cli(*args)
    assert missing.returncode == 2 and "--held-out data.npz" in missing.stderr


def test_the_docstring_examples_run():
    import doctest

    import workbench.compress.distill
    import workbench.compress.prune
    import workbench.compress.quality
    import workbench.compress.quantize
    import workbench.compress.registry
    import workbench.compress.search.candidates
    import workbench.compress.search.constraints
    import workbench.compress.search.recommendation
    import workbench.compress.search.runner

    for module in (
        workbench.compress.registry,
        workbench.compress.distill,
        workbench.compress.prune,
        workbench.compress.quality,
        workbench.compress.quantize,
        workbench.compress.search.candidates,
        workbench.compress.search.constraints,
        workbench.compress.search.recommendation,
        workbench.compress.search.runner,
    ):
        result = doctest.testmod(module)
        assert result.attempted > 0, module.__name__
        assert result.failed == 0, module.__name__
