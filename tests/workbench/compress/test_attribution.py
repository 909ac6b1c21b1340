"""The gain attribution: the recommendation's gain over the baseline split into runtime, threads,
batch size and compression, each configuration measured, the steps multiplying to the total."""

import json
import os
import subprocess
import sys
from dataclasses import asdict

import pytest

from workbench.compress.search.attribution import (
    STEPS,
    ChainConfig,
    MeasuredConfig,
    attribute_gain,
    chain_configs,
)
from workbench.compress.search.runner import optimize
from workbench.errors import ConfigError
from workbench.measure.backends import logical_cores
from workbench.measure.store import RunStore

FAST = {"threads": [1], "measure_seconds": 0.15, "progress": False, "strategy": "grid"}
#: objective "size" makes the int8 variant the winner whatever the timings, so the chain has a
#: real compression step (fp32 ORT -> int8) to check.
INT8 = "ort-int8-dynamic-per-channel"
ONE_CHANGE = {
    "runtime": {"variant", "backend", "device"},
    "threads": {"threads"},
    "batch_size": {"batch_size"},
    "compression": {"variant"},
}


def _changed(a: ChainConfig, b: ChainConfig) -> set[str]:
    return {k for k, v in asdict(a).items() if asdict(b)[k] != v}


# ---------------------------------------------------------------- the arithmetic, by hand


def _hand_points(figures, method="estimated"):
    base = ChainConfig("torch-fp32", "torch", "cpu", 1, 4)
    win = ChainConfig("ort-int8-dynamic", "onnxruntime", "cpu", 32, 1)
    configs = chain_configs(base, win)
    return [MeasuredConfig(c, j, s, method, 1.0) for c, (j, s) in zip(configs, figures)]


def test_the_table_arithmetic_with_hand_numbers():
    points = _hand_points([(50, 400), (100, 1000), (150, 1200), (600, 6000), (900, 6600)])
    points[2] = MeasuredConfig(points[2].config, 150, 1200, "measured", 1.0)
    att = attribute_gain(points)
    frame = att.to_frame()
    assert frame.step.tolist() == list(STEPS)
    assert frame["from"].tolist() == [
        "torch-fp32 b=1 t=4",
        "ort-fp32 b=1 t=4",
        "ort-fp32 b=1 t=1",
        "ort-fp32 b=32 t=1",
    ]
    assert frame["to"].tolist()[-1] == "ort-int8-dynamic b=32 t=1"
    assert frame.items_per_j_ratio.tolist() == pytest.approx([2.0, 1.5, 4.0, 1.5])
    assert frame.items_per_s_ratio.tolist() == pytest.approx([2.5, 1.2, 5.0, 1.1])
    assert att.total_items_per_j_gain == pytest.approx(18.0)
    assert att.total_items_per_s_gain == pytest.approx(16.5)
    assert att.product == pytest.approx(18.0) and att.product_items_per_s == pytest.approx(16.5)
    assert att.consistent
    # each row's method is the weaker of its two figures; the whole is the weakest of all
    assert frame.energy_method.tolist() == ["estimated"] * 4 and att.energy_method == "estimated"
    assert att.summary().startswith("of the 18.0x items/J (estimated), compression itself bought")
    assert "1.5x; runtime 2.0x, threads 1.5x, batch size 4.0x" in att.summary()
    assert att.metrics()["attribution_batch_size_items_per_j_ratio"] == pytest.approx(4.0)
    assert json.loads(json.dumps(att.to_dict()))["steps"][0]["step"] == "runtime"


def test_a_step_that_changes_nothing_is_listed_with_ratio_one():
    base = ChainConfig("torch-fp32", "torch", "cpu", 1, 1)
    win = ChainConfig("torch-int8-dynamic", "torch", "cpu", 8, 1)
    configs = chain_configs(base, win)
    assert configs[0] == configs[1] == configs[2]  # same backend, same threads
    figures = [(10, 100), (10, 100), (10, 100), (40, 700), (60, 800)]
    att = attribute_gain(
        [MeasuredConfig(c, j, s, "measured", 1.0) for c, (j, s) in zip(configs, figures)]
    )
    assert [s.changes for s in att.steps][:2] == ["no change", "no change"]
    assert [s.items_per_j_ratio for s in att.steps] == pytest.approx([1, 1, 4, 1.5])
    assert att.energy_method == "measured"


def test_a_chain_that_changes_two_things_in_one_step_is_refused():
    points = _hand_points([(1, 1)] * 5)
    two = MeasuredConfig(
        ChainConfig("ort-fp32", "onnxruntime", "cpu", 32, 1), 1, 1, "measured", 1.0
    )  # threads and batch size at once
    with pytest.raises(ConfigError, match="step 'threads' changes"):
        attribute_gain([points[0], points[1], two, points[3], points[4]])
    with pytest.raises(ConfigError, match="needs 5 configurations"):
        attribute_gain(points[:4])


# ---------------------------------------------------------------- measured on a real search


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("store") / "runs.sqlite")
    result = optimize(
        "digits-mlp",
        variants=["ort-fp32", INT8],
        batch_sizes=[1, 16],
        objective="size",
        max_quality_drop=0.05,
        store=db,
        **FAST,
    )
    return result, db


def test_the_four_steps_in_order_each_changing_one_thing(searched):
    result, _ = searched
    att, winner = result.attribution, result.recommendation.candidate
    assert winner.name == INT8 and winner.threads == 1
    assert [s.step for s in att.steps] == list(STEPS)
    configs = [p.config for p in att.points]
    assert configs[0] == ChainConfig("torch-fp32", "torch", "cpu", 1, logical_cores())
    assert configs[1] == ChainConfig("ort-fp32", "onnxruntime", "cpu", 1, logical_cores())
    assert configs[2] == ChainConfig("ort-fp32", "onnxruntime", "cpu", 1, 1)
    assert configs[3] == ChainConfig("ort-fp32", "onnxruntime", "cpu", winner.batch_size, 1)
    assert configs[4] == ChainConfig.of(winner)
    for step, before, after in zip(att.steps, configs, configs[1:]):
        assert (step.from_config, step.to_config) == (before, after)
        assert _changed(before, after) <= ONE_CHANGE[step.step], step.step
    assert _changed(configs[0], configs[1]) == {"variant", "backend"}
    assert _changed(configs[3], configs[4]) == {"variant"}
    # every figure measured for the search's final window, by the same meter
    assert {p.measure_seconds for p in att.points} == {FAST["measure_seconds"]}
    assert {s.energy_method for s in att.steps} <= {"measured", "estimated"}


def test_the_product_of_the_steps_is_the_search_s_own_total_gain(searched):
    result, db = searched
    att, rec = result.attribution, result.recommendation
    # the endpoints are the search's baseline and winner measurements, not new ones
    assert att.points[0].items_per_j == result.baseline.items_per_joule
    assert att.points[-1].items_per_j == rec.candidate.items_per_joule
    assert att.product == pytest.approx(rec.items_per_joule_gain, rel=0.01)
    assert att.product_items_per_s == pytest.approx(rec.throughput_gain, rel=0.01)
    assert att.total_items_per_j_gain == pytest.approx(rec.items_per_joule_gain)
    assert att.consistent
    with RunStore(db) as store:
        run = store.runs(kind="optimize", sweep_id=result.search_id)[0]
    assert run.metrics["attribution_product_items_per_j"] == pytest.approx(att.product)
    assert [s["step"] for s in run.details["attribution"]["steps"]] == list(STEPS)
    assert run.details["attribution"]["summary"] == att.summary()


def test_the_compression_step_is_the_winner_over_fp32_ort_at_its_configuration(searched):
    result, _ = searched
    att, winner = result.attribution, result.recommendation.candidate
    fp32 = next(
        c
        for c in result.candidates
        if (c.name, c.batch_size, c.threads) == ("ort-fp32", winner.batch_size, winner.threads)
    )
    step = att.steps[-1]
    assert step.step == "compression" and step.from_config == ChainConfig.of(fp32)
    # the search measured that configuration for the same window: its figure is reused
    assert att.points[3].source == "search measurement"
    assert step.items_per_j_ratio == pytest.approx(winner.items_per_joule / fp32.items_per_joule)
    assert step.items_per_s_ratio == pytest.approx(
        winner.throughput_items_per_s / fp32.throughput_items_per_s
    )
    # ORT fp32 at the baseline's threads was not in the search: measured for the attribution
    assert att.points[1].source == ("measured" if logical_cores() > 1 else "unchanged")


def test_an_fp32_form_the_search_did_not_build_is_built_and_measured(tmp_path):
    result = optimize(
        "digits-mlp",
        variants=[INT8],
        batch_sizes=[8],
        objective="size",
        max_quality_drop=0.05,
        store=False,
        **FAST,
    )
    att = result.attribution
    assert result.recommendation.candidate.name == INT8
    assert att.points[3].config == ChainConfig("ort-fp32", "onnxruntime", "cpu", 8, 1)
    assert att.points[3].source == "measured" and att.points[3].items_per_j > 0
    assert att.steps[-1].items_per_j_ratio == pytest.approx(
        result.recommendation.candidate.items_per_joule / att.points[3].items_per_j
    )
    assert att.product == pytest.approx(result.recommendation.items_per_joule_gain, rel=0.01)
    assert not result.skipped


def test_no_attribution_when_not_asked_or_when_the_search_was_stopped():
    off = optimize(
        "digits-mlp", variants=[INT8], batch_sizes=[8], attribute=False, store=False, **FAST
    )
    assert off.recommendation is not None and off.attribution is None
    calls = {"n": 0}

    def stop_after_the_measurements() -> bool:
        calls["n"] += 1
        return calls["n"] > 3  # the build, the baseline and one configuration

    stopped = optimize(
        "digits-mlp",
        variants=[INT8],
        batch_sizes=[1, 8],
        stop=stop_after_the_measurements,
        store=False,
        **FAST,
    )
    assert stopped.stopped and stopped.recommendation is not None
    assert stopped.attribution is None  # the caller asked to stop: nothing more is measured


# ---------------------------------------------------------------- the demo and the CLI


def test_the_demo_shows_the_same_table_for_its_winner(tmp_path):
    from workbench.demo import compress_step, write_results
    from workbench.models import load_model

    handle = load_model("digits-mlp")
    with RunStore(str(tmp_path / "runs.sqlite")) as store:
        frame, lines, att = compress_step(handle, store, 0.15)
    assert [s.step for s in att.steps] == list(STEPS)
    assert att.points[-1].config.threads == 1 and att.consistent
    assert f"compression: {att.summary()}" in lines
    write_results(tmp_path, "digits-mlp", handle, lines, frame, frame, "x", attribution=att)
    saved = json.loads((tmp_path / "summary.json").read_text())["attribution"]
    assert saved["attribution_product_items_per_j"] == pytest.approx(att.product)
    assert (tmp_path / "attribution.csv").read_text().count("\n") == 5


def test_cli_optimize_prints_the_table_under_the_recommendation(db_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench.cli",
            "optimize",
            "digits-mlp",
            "-v",
            INT8,
            "-n",
            "8",
            "-t",
            "1",
            "--measure-seconds",
            "0.1",
            "--db",
            db_path,
        ],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.index("recommended:") < text.index("where the gain comes from")
    for step in STEPS:
        assert f"│ {step}" in text
    assert "(within 1%: ok)" in text and "compression itself bought" in text
