"""Scenario files, run-store figures and the ``workbench cost`` command."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from workbench.cli.app import main
from workbench.cost.model import (
    GridInputs,
    InferenceInputs,
    Scenario,
    TrainingInputs,
    cascade_effective,
    compute_cost,
)
from workbench.cost.scenarios import (
    inference_inputs_from_run,
    load_scenarios,
    scenarios_from_dict,
)
from workbench.errors import ConfigError, StoreError
from workbench.measure.store import RunStore

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "scenarios.yaml"

MINIMAL = {
    "scenarios": {
        "a": {
            "grid": {"electricity_usd_per_kwh": 0.1, "pue": 1.2, "carbon_g_per_kwh": 200},
            "inference": {
                "requests_per_day": 100000,
                "lifetime_months": 12,
                "energy_j_per_item": 1.0,
                "throughput_items_per_s": 100,
                "instance_usd_per_h": 1.0,
            },
        }
    }
}


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "runs.sqlite") as s:
        yield s


def _profile_run(store: RunStore, **metrics) -> int:
    return store.add("profile", model="digits-mlp", fingerprint="ab12",
                     config={"batch_size": 8}, metrics=metrics)  # fmt: skip


def test_example_file_loads_four_scenarios():
    sset = load_scenarios(EXAMPLE)
    assert list(sset.scenarios) == [
        "baseline",
        "optimised",
        "optimised+cascade+cache",
        "optimised-nordic",
    ]
    assert sset.baseline == "baseline"
    base = sset.scenarios["baseline"]
    # defaults merged under the scenario's own keys; "3.0e+7" read as a number
    assert base.inference.requests_per_day == 3.0e7
    assert base.inference.energy_j_per_item == 0.9
    assert base.training.retrain_every_months == 6
    assert base.training_grid is None
    cascade = sset.scenarios["optimised+cascade+cache"].inference
    energy, throughput = cascade_effective(0.04, 2500, 0.3, 380, 0.2)
    assert cascade.energy_j_per_item == pytest.approx(energy)
    assert cascade.throughput_items_per_s == pytest.approx(throughput)
    assert cascade.cache_hit_rate == 0.25
    nordic = sset.scenarios["optimised-nordic"]
    assert nordic.grid.carbon_g_per_kwh == 30
    assert nordic.training_grid.carbon_g_per_kwh == 380


def test_example_file_matches_the_same_scenario_built_in_python():
    base = load_scenarios(EXAMPLE).scenarios["baseline"]
    by_hand = Scenario(
        name="baseline",
        training=TrainingInputs(
            accelerator_hours=192, n_accelerators=8, accelerator_power_w=300,
            accelerator_usd_per_h=2.5, memory_gb=640, pragmatic_scaling_factor=3,
            retrain_every_months=6, hardware="8x A100 (rented)",
        ),
        inference=InferenceInputs(
            requests_per_day=3e7, requests_growth_per_month=0.03, lifetime_months=36,
            utilisation=0.5, min_instances=2, instance_usd_per_h=0.34, idle_power_w=45,
            energy_j_per_item=0.9, throughput_items_per_s=120, hardware="8 vCPU instance",
        ),
        grid=GridInputs(electricity_usd_per_kwh=0.12, pue=1.4, carbon_g_per_kwh=380,
                        region="us-east"),
    )  # fmt: skip
    assert base == by_hand
    # Training: 192 device-hours x 3 runs x $2.5 = $1,440 per training, 6 trainings in 36 months.
    assert compute_cost(base).training_cost_usd == pytest.approx(6 * 1440.0)


def test_toml_file_gives_the_same_scenarios(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        """
[scenarios.a.grid]
electricity_usd_per_kwh = 0.1
pue = 1.2
carbon_g_per_kwh = 200

[scenarios.a.inference]
requests_per_day = 1e5
lifetime_months = 12
energy_j_per_item = 1.0
throughput_items_per_s = 100
instance_usd_per_h = 1.0
"""
    )
    assert load_scenarios(path).scenarios == scenarios_from_dict(MINIMAL).scenarios


@pytest.mark.parametrize(
    ("data", "key", "valid"),
    [
        ({**MINIMAL, "scenario": {}}, "scenario", "baseline, defaults, scenarios"),
        ({**MINIMAL, "defaults": {"inferense": {}}}, "inferense", "training, inference, grid"),
        (
            {"scenarios": {"a": {**MINIMAL["scenarios"]["a"], "gird": {}}}},
            "gird",
            "training_grid",
        ),
        (
            {"scenarios": {"a": {**MINIMAL["scenarios"]["a"], "inference": {
                **MINIMAL["scenarios"]["a"]["inference"], "requests_per_dya": 5}}}},
            "requests_per_dya",
            "requests_per_day",
        ),
        (
            {"scenarios": {"a": {**MINIMAL["scenarios"]["a"], "grid": {
                **MINIMAL["scenarios"]["a"]["grid"], "PUE": 1.3}}}},
            "PUE",
            "electricity_usd_per_kwh, pue, carbon_g_per_kwh",
        ),
        (
            {"scenarios": {"a": {**MINIMAL["scenarios"]["a"], "inference": {
                **MINIMAL["scenarios"]["a"]["inference"],
                "cascade": {"escalation": 0.2}}}}},
            "escalation",
            "escalation_rate",
        ),
    ],
)  # fmt: skip
def test_unknown_keys_are_named_with_the_valid_ones(data, key, valid):
    with pytest.raises(ConfigError) as info:
        scenarios_from_dict(data, source="s.yaml")
    message = str(info.value)
    assert f"unknown key {key!r}" in message
    assert valid in message
    assert message.startswith("s.yaml")


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["scenarios"]["optimised"]["inference"]["jouls_per_item"] = 0.2
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"bad\.yaml.*unknown key 'jouls_per_item' in "
                                          r"scenarios\.optimised\.inference"):  # fmt: skip
        load_scenarios(path)


def test_missing_and_bad_values_name_the_field():
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    del data["scenarios"]["a"]["inference"]["lifetime_months"]
    with pytest.raises(ConfigError, match=r"scenarios\.a\.inference is missing lifetime_months"):
        scenarios_from_dict(data)
    data["scenarios"]["a"]["inference"]["lifetime_months"] = -1
    with pytest.raises(ConfigError, match=r"inference\.lifetime_months must be > 0"):
        scenarios_from_dict(data)
    data["scenarios"]["a"]["inference"]["lifetime_months"] = 12
    data["scenarios"]["a"]["grid"]["pue"] = 0.95
    with pytest.raises(ConfigError, match=r"scenarios\.a\.grid: grid\.pue must be >= 1"):
        scenarios_from_dict(data)
    del data["scenarios"]["a"]["grid"]
    with pytest.raises(ConfigError, match="needs a grid section"):
        scenarios_from_dict(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "expected a mapping"),
        ({"scenarios": {}}, "at least one scenario"),
        ({**MINIMAL, "baseline": "b"}, "baseline 'b' is not a scenario"),
    ],
)
def test_malformed_files(data, message):
    with pytest.raises(ConfigError, match=message):
        scenarios_from_dict(data)


def test_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_scenarios(tmp_path / "nope.yaml")
    (tmp_path / "s.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"\.yaml, \.yml or \.toml"):
        load_scenarios(tmp_path / "s.json")
    (tmp_path / "s.yaml").write_text("scenarios: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_scenarios(tmp_path / "s.yaml")
    (tmp_path / "s.toml").write_text("scenarios = = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_scenarios(tmp_path / "s.toml")


def test_training_null_means_not_trained_here():
    data = yaml.safe_load(EXAMPLE.read_text())
    data["scenarios"]["optimised"]["training"] = None
    sset = scenarios_from_dict(data)
    assert sset.scenarios["optimised"].training is None
    assert sset.scenarios["baseline"].training is not None


def test_inference_from_run_carries_measured_figures(store):
    rid = _profile_run(store, energy_j_per_item=0.25, energy_method="measured",
                       throughput_items_per_s=400.0, latency_ms_p50=2.0)  # fmt: skip
    inf = inference_inputs_from_run(store, rid, requests_per_day=1e6, lifetime_months=24,
                                    instance_usd_per_h=0.3)  # fmt: skip
    assert (inf.energy_j_per_item, inf.throughput_items_per_s) == (0.25, 400.0)
    assert (inf.energy_method, inf.throughput_method, inf.run_id) == ("measured", "measured", rid)
    report = compute_cost(Scenario("m", inf, GridInputs(0.1, 1.2, 300)))
    assert report.inference_method == "measured"

    base = load_scenarios(EXAMPLE).scenarios["baseline"].inference
    replaced = inference_inputs_from_run(store, rid, base=base)
    assert replaced.requests_per_day == base.requests_per_day
    assert replaced.energy_j_per_item == 0.25


def test_run_without_energy_method_is_not_called_measured(store):
    rid = _profile_run(store, energy_j_per_item=0.25, throughput_items_per_s=400.0)
    inf = inference_inputs_from_run(store, rid, requests_per_day=1e6, lifetime_months=24,
                                    instance_usd_per_h=0.3)  # fmt: skip
    assert inf.energy_method == "estimated"


def test_run_id_that_does_not_exist(store):
    with pytest.raises(StoreError, match="no run with id 4242"):
        inference_inputs_from_run(store, 4242, requests_per_day=1e6, lifetime_months=24,
                                  instance_usd_per_h=0.3)  # fmt: skip


def test_run_without_energy_says_to_profile_with_energy(store):
    rid = _profile_run(store, throughput_items_per_s=400.0, latency_ms_p50=2.0)
    with pytest.raises(ConfigError, match=r"no energy_j_per_item.*workbench profile --energy"):
        inference_inputs_from_run(store, rid, requests_per_day=1e6, lifetime_months=24,
                                  instance_usd_per_h=0.3)  # fmt: skip
    rid2 = _profile_run(store, energy_j_per_item=0.3, energy_method="estimated")
    with pytest.raises(ConfigError, match="no throughput_items_per_s"):
        inference_inputs_from_run(store, rid2, requests_per_day=1e6, lifetime_months=24,
                                  instance_usd_per_h=0.3)  # fmt: skip


def test_run_ids_in_file_and_by_name(store):
    rid = _profile_run(store, energy_j_per_item=0.2, energy_method="measured",
                       throughput_items_per_s=500.0)  # fmt: skip
    data = yaml.safe_load(EXAMPLE.read_text())
    data["scenarios"]["optimised"]["inference"]["run_id"] = rid
    sset = scenarios_from_dict(data, store=store, run_ids={"": rid})
    for name in ("baseline", "optimised"):
        inf = sset.scenarios[name].inference
        assert (inf.energy_j_per_item, inf.energy_method, inf.run_id) == (0.2, "measured", rid)
    # the cascade is built on the measured large model; its small model is typed in
    cascade = scenarios_from_dict(data, store=store, run_ids={"optimised+cascade+cache": rid})
    inf = cascade.scenarios["optimised+cascade+cache"].inference
    assert inf.energy_j_per_item == pytest.approx(cascade_effective(0.04, 2500, 0.2, 500, 0.2)[0])
    assert inf.energy_method == "typed in"
    with pytest.raises(ConfigError, match="'nope', which is not in"):
        scenarios_from_dict(data, store=store, run_ids={"nope": rid})


# ---- CLI --------------------------------------------------------------------------------------


def test_cli_cost_on_the_example_file(capsys):
    assert main(["cost", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    for name in ("baseline", "optimised", "optimised+cascade+cache", "optimised-nordic"):
        assert name in out
    assert "break_even_day" in out
    assert "training against inference" in out
    assert "what moves the total most" in out
    assert "typed in" in out


def test_cli_cost_writes_tables_and_offline_charts(tmp_path, capsys):
    out_dir = tmp_path / "out"
    assert main(["cost", str(EXAMPLE), "--out", str(out_dir)]) == 0
    names = {p.name for p in out_dir.iterdir()}
    assert {"scenarios.csv", "monthly.csv", "sensitivity.csv"} <= names
    for chart in ("cumulative", "scenarios", "tornado"):
        assert {f"{chart}.html", f"{chart}.svg"} <= names
        html = (out_dir / f"{chart}.html").read_text()
        assert "cdn.jsdelivr" not in html
        assert (out_dir / f"{chart}.svg").read_text().lstrip().startswith("<svg")
    import pandas as pd

    table = pd.read_csv(out_dir / "scenarios.csv")
    assert table["scenario"].iloc[0] == "baseline"
    monthly = pd.read_csv(out_dir / "monthly.csv")
    assert len(monthly) == 4 * 36


def test_cli_cost_with_a_measured_run(store, tmp_path, capsys):
    import pandas as pd

    rid = _profile_run(store, energy_j_per_item=0.2, energy_method="measured",
                       throughput_items_per_s=500.0)  # fmt: skip
    out_dir = tmp_path / "out"
    args = ["cost", str(EXAMPLE), "--db", store.path, "--out", str(out_dir)]
    assert main([*args, "--run-id", f"optimised={rid}"]) == 0
    table = pd.read_csv(out_dir / "scenarios.csv").set_index("scenario")
    expected = scenarios_from_dict(yaml.safe_load(EXAMPLE.read_text()), store=store,
                                   run_ids={"optimised": rid}).scenarios["optimised"]  # fmt: skip
    assert expected.inference.energy_j_per_item == 0.2
    assert table.loc["optimised", "total_energy_kwh"] == pytest.approx(
        compute_cost(expected).total_energy_kwh
    )
    capsys.readouterr()
    # a bare id is the baseline's: its inference row is now measured
    assert main(["cost", str(EXAMPLE), "--db", store.path, "--run-id", str(rid)]) == 0
    summary = capsys.readouterr().out.split("training against inference")[1]
    inference_row = next(line for line in summary.splitlines() if "inference" in line)
    assert "measured" in inference_row


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--run-id", "4242"], "no run with id 4242"),
        (["--run-id", "nope=1"], "'nope', which is not in"),
        (["--run-id", "baseline=abc"], "SCENARIO=ID"),
    ],
)
def test_cli_cost_bad_run_ids_exit_2(store, capsys, args, message):
    assert main(["cost", str(EXAMPLE), "--db", store.path, *args]) == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split())


def test_cli_cost_bad_file_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("scenarios:\n  a:\n    infrence: {}\n")
    assert main(["cost", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "unknown key 'infrence'" in err
    assert main(["cost", str(tmp_path / "missing.yaml")]) == 2
