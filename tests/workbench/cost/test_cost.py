"""Lifecycle cost model: hand-computed examples, Green Algorithms, properties, bad input, charts."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.cost.model import (
    DAYS_PER_MONTH,
    GridInputs,
    InferenceInputs,
    Scenario,
    TrainingInputs,
    cascade_effective,
    compute_cost,
    green_algorithms_energy_kwh,
    training_energy_kwh,
)
from workbench.cost.savings import compare, compare_scenarios
from workbench.cost.tornado import sensitivity
from workbench.errors import ConfigError

GRID = GridInputs(electricity_usd_per_kwh=0.2, pue=1.5, carbon_g_per_kwh=400)
INFERENCE = InferenceInputs(
    requests_per_day=1_728_000,  # 20 items/s on average
    lifetime_months=12,  # round(12 * 30.4375) = 365 days
    energy_j_per_item=2.0,
    throughput_items_per_s=10.0,
    utilisation=0.5,
    idle_power_w=5.0,
    instance_usd_per_h=0.25,
)
TRAINING = TrainingInputs(
    accelerator_hours=100,
    n_accelerators=4,
    accelerator_power_w=250,
    usage=0.8,
    memory_gb=64,
    pragmatic_scaling_factor=2,
    accelerator_usd_per_h=3.0,
)
SCENARIO = Scenario("hand", inference=INFERENCE, grid=GRID, training=TRAINING)


def test_hand_computed_rented_example():
    """Every number below is worked out by hand from the inputs above.

    Inference, per day:
      capacity per instance = 86400 s * 10 items/s * 0.5 = 432,000 items
      instances = ceil(1,728,000 / 432,000) = 4
      busy = 1,728,000 / 10 = 172,800 instance-s; idle = 4 * 86400 - 172,800 = 172,800 s
      IT energy = 1,728,000 * 2 J + 5 W * 172,800 s = 4,320,000 J = 1.2 kWh; x PUE 1.5 = 1.8 kWh
      money = 4 instances * 24 h * $0.25 = $24 (rented: electricity included)
    Over 365 days: $8,760; 657 kWh; 657 * 400 g = 0.2628 t.
    Training (Green Algorithms): wall-clock = 100 / 4 = 25 h
      (100 h * 250 W * 0.8 + 25 h * 64 GB * 0.3725 W/GB) = 20,596 Wh = 20.596 kWh
      x PUE 1.5 x PSF 2 = 61.788 kWh; money = 100 h * 2 runs * $3 = $600
      carbon = 61.788 * 400 g = 0.0247152 t
    Break-even: $24 a day reaches $600 on day 25.
    """
    r = compute_cost(SCENARIO)
    assert r.n_days == 365
    assert np.all(r.daily["instances"] == 4)
    assert r.daily["inference_energy_kwh"][0] == pytest.approx(1.8)
    assert r.daily["inference_cost_usd"][0] == pytest.approx(24.0)
    assert r.inference_cost_usd == pytest.approx(8760.0)
    assert r.inference_energy_kwh == pytest.approx(657.0)
    assert r.inference_co2_t == pytest.approx(0.2628)
    assert r.training_energy_kwh == pytest.approx(61.788)
    assert r.training_cost_usd == pytest.approx(600.0)
    assert r.training_co2_t == pytest.approx(0.0247152)
    assert r.total_cost_usd == pytest.approx(9360.0)
    assert r.inference_share == pytest.approx(8760 / 9360)
    assert r.break_even_day == 25
    # 1,728,000 * 365 = 630,720,000 predictions; $8,760 / 630.72 million
    assert r.inference_usd_per_million == pytest.approx(8760 / 630.72)
    assert r.lifecycle_usd_per_million == pytest.approx(9360 / 630.72)


def test_hand_computed_owned_hardware_pays_amortisation_and_electricity():
    """$7,305 over 10 months of 730.5 h is $1 per instance-hour; electricity is billed on top.

    Per day: 4 instances * 24 h * $1 = $96, plus 1.8 kWh * $0.2 = $0.36 -> $96.36.
    Training owned at $7,305 per device over 10 months -> $1 per device-hour:
    100 h * 2 runs * $1 = $200, plus 61.788 kWh * $0.2 = $12.3576 -> $212.3576.
    """
    inf = replace(INFERENCE, instance_usd_per_h=None, instance_purchase_usd=7305.0,
                  amortise_months=10)  # fmt: skip
    tr = replace(TRAINING, accelerator_usd_per_h=None, accelerator_purchase_usd=7305.0,
                 amortise_months=10)  # fmt: skip
    r = compute_cost(Scenario("owned", inf, GRID, tr))
    assert r.daily["inference_cost_usd"][0] == pytest.approx(96.36)
    assert r.inference_cost_usd == pytest.approx(96.36 * 365)
    assert r.training_cost_usd == pytest.approx(212.3576)


def test_green_algorithms_formula_reproduces_published_meena_example():
    """Green Algorithms (Lannelongue, Grealey & Inouye 2021, Adv. Sci. 8, 2100707):
    E = t * (n_c * P_c * u_c + n_m * P_m) * PUE * 0.001 kWh, with P_m = 0.3725 W/GB.

    Published example: the row for Google's Meena chatbot (id ``google_meena_1``) in the
    project's curated table of algorithm footprints (GreenAlgorithms/green-algorithms-tool,
    data/curated_algorithms_details.csv): 720 h (30 days) on 2048 TPU v3 cores at 200 W each,
    341 GB of memory; the table's energy column is computed with the tool's default PUE of 1.67
    and gives 492,655.772 kWh; at the world-average 475 gCO2e/kWh the table gives
    234,011.492 kgCO2e. Power draw 409.727 kW.
    """
    energy = green_algorithms_energy_kwh(720, 2048, 200.0, 341, pue=1.67)
    assert round(energy, 3) == 492_655.772
    assert round(energy * 0.475, 3) == 234_011.492
    assert green_algorithms_energy_kwh(1, 2048, 200.0, 341) == pytest.approx(409.727, abs=5e-4)

    # The same figure through the training inputs: 2048 devices for 720 h of wall-clock.
    training = TrainingInputs(
        accelerator_hours=2048 * 720,
        n_accelerators=2048,
        accelerator_power_w=200,
        memory_gb=341,
        accelerator_usd_per_h=1.0,
    )
    grid = GridInputs(electricity_usd_per_kwh=0.1, pue=1.67, carbon_g_per_kwh=475)
    assert round(training_energy_kwh(training, grid), 3) == 492_655.772


def test_green_algorithms_usage_factor_scales_core_power_only():
    # 2 h * (4 cores * 10 W * 0.5 + 10 GB * 0.3725 W/GB) = 2 * 23.725 Wh = 0.04745 kWh
    assert green_algorithms_energy_kwh(2, 4, 10.0, 10, usage=0.5) == pytest.approx(0.04745)
    # Pragmatic scaling factor 3 triples it.
    assert green_algorithms_energy_kwh(
        2, 4, 10.0, 10, usage=0.5, pragmatic_scaling_factor=3
    ) == pytest.approx(0.14235)


@pytest.mark.parametrize(
    ("training_usd", "per_day_usd", "expected_day"),
    [(600.0, 24.0, 25), (1000.0, 30.0, 34), (24.0, 24.0, 1), (23.0, 24.0, 1)],
)
def test_break_even_day_exact_for_constant_rate(training_usd, per_day_usd, expected_day):
    """Constant traffic, one instance always: inference costs per_day_usd every day, so the
    break-even day is ceil(training / per_day): 600/24 = 25, 1000/30 = 33.3 -> 34, 24/24 = 1."""
    inf = InferenceInputs(
        requests_per_day=1000,
        lifetime_months=12,
        energy_j_per_item=1.0,
        throughput_items_per_s=100.0,
        instance_usd_per_h=per_day_usd / 24,
    )
    tr = TrainingInputs(accelerator_hours=1, accelerator_power_w=100,
                        accelerator_usd_per_h=training_usd)  # fmt: skip
    r = compute_cost(Scenario("c", inf, GRID, tr))
    assert r.break_even_day == expected_day == math.ceil(training_usd / per_day_usd)
    day = r.break_even_day
    assert r.daily["cumulative_inference_cost_usd"][day - 1] >= training_usd
    if day > 1:
        assert r.daily["cumulative_inference_cost_usd"][day - 2] < training_usd


def test_no_break_even_within_lifetime_or_without_training():
    inf = replace(INFERENCE, lifetime_months=0.5)  # 15 days at $24 = $360 < $600
    assert compute_cost(Scenario("short", inf, GRID, TRAINING)).break_even_day is None
    r = compute_cost(Scenario("pretrained", INFERENCE, GRID))
    assert r.break_even_day is None
    assert r.training_cost_usd == 0.0
    assert r.inference_share == 1.0


def test_retraining_schedule():
    """Every 6 months over 24 months: days 0, 182, 365, 547 (floor of k * 182.625); over
    36 months a retraining due on the last day does not happen, so 6 runs, not 7."""
    tr = replace(TRAINING, retrain_every_months=6)
    r = compute_cost(Scenario("r", replace(INFERENCE, lifetime_months=24), GRID, tr))
    assert list(np.flatnonzero(r.daily["training_cost_usd"])) == [0, 182, 365, 547]
    assert r.training_cost_usd == pytest.approx(4 * 600.0)
    r36 = compute_cost(Scenario("r", replace(INFERENCE, lifetime_months=36), GRID, tr))
    assert np.count_nonzero(r36.daily["training_cost_usd"]) == 6


def test_growth_compounds_monthly():
    inf = replace(INFERENCE, requests_growth_per_month=0.1, lifetime_months=3)
    r = compute_cost(Scenario("g", inf, GRID))
    req = r.daily["requests"]
    assert req[0] == pytest.approx(1_728_000)
    # 10 % a month, compounded daily: each day is 1.1 ** (1 / 30.4375) times the day before.
    assert req[1] / req[0] == pytest.approx(1.1 ** (1 / DAYS_PER_MONTH))
    assert r.daily["instances"][-1] >= r.daily["instances"][0]


def test_cache_hits_cost_no_model_energy():
    """With no idle draw, a 50 % cache hit rate halves the serving energy."""
    inf = replace(INFERENCE, idle_power_w=0.0)
    full = compute_cost(Scenario("a", inf, GRID))
    cached = compute_cost(Scenario("b", replace(inf, cache_hit_rate=0.5), GRID))
    assert cached.inference_energy_kwh == pytest.approx(full.inference_energy_kwh / 2)
    assert cached.total_requests == full.total_requests  # cache hits are still predictions


def test_cascade_effective_hand_example():
    """Small model 0.1 J and 1000 items/s; 20 % escalate to a 1 J, 100 items/s model:
    0.1 + 0.2 * 1 = 0.3 J per item; 1 / (1/1000 + 0.2/100) = 1 / 0.003 = 333.3 items/s."""
    energy, throughput = cascade_effective(0.1, 1000.0, 1.0, 100.0, 0.2)
    assert energy == pytest.approx(0.3)
    assert throughput == pytest.approx(1000 / 3)
    with pytest.raises(ConfigError, match="escalation_rate"):
        cascade_effective(0.1, 1000.0, 1.0, 100.0, 1.5)


def test_monthly_sums_equal_totals():
    r = compute_cost(replace(SCENARIO, training=replace(TRAINING, retrain_every_months=2)))
    m = r.monthly
    assert list(m["month"]) == list(range(12))
    assert m["days"].sum() == r.n_days
    assert m["inference_cost_usd"].sum() == pytest.approx(r.inference_cost_usd)
    assert m["training_energy_kwh"].sum() == pytest.approx(r.training_energy_kwh)
    assert m["inference_co2_t"].sum() == pytest.approx(r.inference_co2_t)
    assert m["cumulative_training_cost_usd"].iloc[-1] == pytest.approx(r.training_cost_usd)


def test_methods_travel_to_the_outputs():
    measured = replace(INFERENCE, energy_method="measured", throughput_method="measured")
    r = compute_cost(Scenario("m", measured, GRID, TRAINING))
    assert r.inference_method == "measured"
    assert r.training_method == "typed in"
    assert r.method == "typed in"
    summary = r.summary().set_index("phase")
    assert summary.loc["inference", "method"] == "measured"
    assert summary.loc["total", "method"] == "typed in"
    estimated = replace(measured, energy_method="estimated")
    r2 = compute_cost(Scenario("e", estimated, GRID))
    assert r2.method == "estimated"
    assert compare(r, r2).method == "estimated"
    assert compare_scenarios({"m": Scenario("m", measured, GRID)})["method"].tolist() == [
        "measured"
    ]


def test_compare_hand_example():
    """Halving J/item with no idle draw halves inference energy: baseline 1.2 kWh/day at the
    meter (x1.5 = 1.8) becomes 0.9 kWh/day; over 365 days 657 -> 328.5 kWh, saved 50 %.
    Money is unchanged (same 4 rented instances)."""
    base_inf = replace(INFERENCE, idle_power_w=0.0, energy_j_per_item=2.5)
    # 1,728,000 * 2.5 J = 4.32 MJ = 1.2 kWh
    opt_inf = replace(base_inf, energy_j_per_item=1.25)
    base = compute_cost(Scenario("base", base_inf, GRID))
    opt = compute_cost(Scenario("opt", opt_inf, GRID))
    saved = compare(base, opt)
    assert base.inference_energy_kwh == pytest.approx(657.0)
    assert saved.energy_kwh == pytest.approx(328.5)
    assert saved.energy_pct == pytest.approx(50.0)
    assert saved.co2_t == pytest.approx(328.5 * 400 / 1e6)
    assert saved.cost_usd == pytest.approx(0.0)
    assert list(saved.to_frame()["quantity"]) == ["cost_usd", "energy_kwh", "co2_t"]


def test_compare_scenarios_side_by_side():
    faster = replace(INFERENCE, throughput_items_per_s=20.0, energy_j_per_item=1.0)
    frame = compare_scenarios({"base": SCENARIO, "fast": replace(SCENARIO, inference=faster)})
    assert list(frame["scenario"]) == ["base", "fast"]
    assert frame.loc[0, "saved_cost_pct"] == 0.0
    # 2 instances instead of 4: inference $4,380 instead of $8,760; total 4,980 vs 9,360.
    assert frame.loc[1, "total_cost_usd"] == pytest.approx(4980.0)
    assert frame.loc[1, "saved_cost_pct"] == pytest.approx(100 * 4380 / 9360)
    with pytest.raises(ConfigError, match="baseline 'nope'"):
        compare_scenarios({"base": SCENARIO}, baseline="nope")


def test_sensitivity_ranks_by_swing_and_clamps():
    frame = sensitivity(SCENARIO, pct=20)
    assert list(frame["swing"]) == sorted(frame["swing"], reverse=True)
    assert (frame["swing"] > 0).all()
    # Money here is instance-hours: lifetime and instance price move it most (+-20 % of $8,760
    # is a swing of $3,504), ahead of anything in training (+-20 % of $600 = $240).
    top = set(frame["input"].head(2))
    assert top == {"inference.lifetime_months", "inference.instance_usd_per_h"}
    row = frame.set_index("input").loc["inference.instance_usd_per_h"]
    assert row["swing"] == pytest.approx(0.4 * 8760)
    assert frame.set_index("input").loc["training.accelerator_usd_per_h", "swing"] == (
        pytest.approx(0.4 * 600)
    )
    # PUE 1.0 cannot go lower: the low value is clamped at 1.
    energy = sensitivity(replace(SCENARIO, grid=replace(GRID, pue=1.0)), output="total_energy_kwh")
    pue = energy.set_index("input").loc["grid.pue"]
    assert pue["low_value"] == 1.0
    assert pue["high_value"] == pytest.approx(1.2)
    with pytest.raises(ConfigError, match="not a CostReport figure"):
        sensitivity(SCENARIO, output="nonsense")


def test_five_year_daily_horizon():
    r = compute_cost(replace(SCENARIO, inference=replace(INFERENCE, lifetime_months=60)))
    assert r.n_days == 1826
    assert len(r.monthly) == 60


# ---- properties -------------------------------------------------------------------------------

positive = st.floats(min_value=1e-3, max_value=1e9, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    requests=st.floats(min_value=1.0, max_value=1e9),
    extra=st.floats(min_value=0.0, max_value=1e9),
    energy=st.floats(min_value=1e-3, max_value=100.0),
    throughput=st.floats(min_value=0.1, max_value=1e4),
    idle_fraction=st.floats(min_value=0.0, max_value=1.0),
    owned=st.booleans(),
    cache=st.floats(min_value=0.0, max_value=0.99),
)
def test_more_requests_never_lower_inference_cost(
    requests, extra, energy, throughput, idle_fraction, owned, cache
):
    price = {"instance_purchase_usd": 5000.0} if owned else {"instance_usd_per_h": 0.5}
    inf = InferenceInputs(
        requests_per_day=requests,
        lifetime_months=2,
        energy_j_per_item=energy,
        throughput_items_per_s=throughput,
        idle_power_w=idle_fraction * energy * throughput,
        cache_hit_rate=cache,
        **price,
    )
    less = compute_cost(Scenario("a", inf, GRID))
    more = compute_cost(Scenario("b", replace(inf, requests_per_day=requests + extra), GRID))
    assert more.inference_cost_usd >= less.inference_cost_usd * (1 - 1e-12)
    assert more.inference_energy_kwh >= less.inference_energy_kwh * (1 - 1e-12)


@settings(max_examples=60, deadline=None)
@given(
    pue=st.floats(min_value=1.0, max_value=3.0),
    extra=st.floats(min_value=0.0, max_value=2.0),
    requests=st.floats(min_value=1.0, max_value=1e8),
    hours=positive,
)
def test_higher_pue_never_lowers_energy(pue, extra, requests, hours):
    tr = replace(TRAINING, accelerator_hours=hours)
    inf = replace(INFERENCE, requests_per_day=requests)
    low = compute_cost(Scenario("a", inf, replace(GRID, pue=pue), tr))
    high = compute_cost(Scenario("b", inf, replace(GRID, pue=pue + extra), tr))
    assert high.total_energy_kwh >= low.total_energy_kwh
    assert high.training_energy_kwh >= low.training_energy_kwh
    assert high.inference_energy_kwh >= low.inference_energy_kwh


@settings(max_examples=40, deadline=None)
@given(
    requests=st.floats(min_value=1.0, max_value=1e9),
    growth=st.floats(min_value=-0.5, max_value=0.5),
    months=st.floats(min_value=0.1, max_value=60),
    pue=st.floats(min_value=1.0, max_value=2.5),
    retrain=st.none() | st.floats(min_value=0.5, max_value=24),
)
def test_savings_zero_for_identical_scenarios(requests, growth, months, pue, retrain):
    inf = replace(INFERENCE, requests_per_day=requests, requests_growth_per_month=growth,
                  lifetime_months=months)  # fmt: skip
    s = Scenario("x", inf, replace(GRID, pue=pue), replace(TRAINING, retrain_every_months=retrain))
    saved = compare(compute_cost(s), compute_cost(replace(s, name="y")))
    assert (saved.cost_usd, saved.energy_kwh, saved.co2_t) == (0.0, 0.0, 0.0)
    assert (saved.cost_pct, saved.energy_pct, saved.co2_pct) == (0.0, 0.0, 0.0)


# ---- bad input --------------------------------------------------------------------------------

BAD_INFERENCE = [
    ({"lifetime_months": 0}, "inference.lifetime_months"),
    ({"lifetime_months": -3}, "inference.lifetime_months"),
    ({"requests_per_day": 0}, "inference.requests_per_day"),
    ({"requests_per_day": -10}, "inference.requests_per_day"),
    ({"energy_j_per_item": 0}, "inference.energy_j_per_item"),
    ({"throughput_items_per_s": -1}, "inference.throughput_items_per_s"),
    ({"instance_usd_per_h": 0}, "inference.instance_usd_per_h"),
    ({"instance_usd_per_h": -0.5}, "inference.instance_usd_per_h"),
    ({"instance_usd_per_h": None}, "instance_purchase_usd"),  # neither price
    ({"instance_purchase_usd": 1000.0}, "got both"),
    ({"amortise_months": 0}, "inference.amortise_months"),
    ({"utilisation": 0}, "inference.utilisation"),
    ({"utilisation": 1.5}, "inference.utilisation"),
    ({"cache_hit_rate": 1.0}, "inference.cache_hit_rate"),
    ({"requests_growth_per_month": -1.0}, "inference.requests_growth_per_month"),
    ({"idle_power_w": -1}, "inference.idle_power_w"),
    ({"idle_power_w": 50.0}, "exceeds the power under load"),  # 2 J x 10 items/s = 20 W
    ({"min_instances": -1}, "inference.min_instances"),
    ({"min_instances": 1.5}, "inference.min_instances"),
    ({"energy_method": "guessed"}, "inference.energy_method"),
    ({"requests_per_day": float("nan")}, "inference.requests_per_day"),
    ({"requests_per_day": "many"}, "inference.requests_per_day"),
    ({"lifetime_months": True}, "inference.lifetime_months"),
]


@pytest.mark.parametrize(("change", "field"), BAD_INFERENCE)
def test_bad_inference_input_names_the_field(change, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        replace(INFERENCE, **change)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"electricity_usd_per_kwh": 0}, "grid.electricity_usd_per_kwh"),
        ({"electricity_usd_per_kwh": -0.1}, "grid.electricity_usd_per_kwh"),
        ({"pue": 0.9}, "grid.pue"),
        ({"pue": 0}, "grid.pue"),
        ({"carbon_g_per_kwh": -5}, "grid.carbon_g_per_kwh"),
        ({"carbon_method": "vibes"}, "grid.carbon_method"),
    ],
)
def test_bad_grid_input_names_the_field(change, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        replace(GRID, **change)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"accelerator_hours": 0}, "training.accelerator_hours"),
        ({"accelerator_power_w": -100}, "training.accelerator_power_w"),
        ({"accelerator_usd_per_h": 0}, "training.accelerator_usd_per_h"),
        ({"accelerator_usd_per_h": None}, "accelerator_purchase_usd"),
        ({"n_accelerators": 0}, "training.n_accelerators"),
        ({"usage": 0}, "training.usage"),
        ({"memory_gb": -1}, "training.memory_gb"),
        ({"pragmatic_scaling_factor": 0}, "training.pragmatic_scaling_factor"),
        ({"retrain_every_months": 0}, "training.retrain_every_months"),
        ({"retrain_every_months": -6}, "training.retrain_every_months"),
        ({"power_method": "unknown"}, "training.power_method"),
    ],
)
def test_bad_training_input_names_the_field(change, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        replace(TRAINING, **change)


def test_pue_error_says_the_fix():
    with pytest.raises(ConfigError) as info:
        replace(GRID, pue=0.8)
    assert "0.8" in str(info.value)
    assert "use 1.0" in str(info.value)


# ---- charts -----------------------------------------------------------------------------------


def test_cumulative_chart_marks_break_even():
    from workbench.cost.charts import cumulative_cost_chart

    report = compute_cost(SCENARIO)
    spec = cumulative_cost_chart(report).to_dict()
    line, rule, label = spec["layer"]
    assert label["mark"]["type"] == "text"
    assert line["mark"]["type"] == "line"
    assert line["encoding"]["x"]["field"] == "day"
    assert line["encoding"]["y"]["field"] == "cumulative_cost_usd"
    values = line["data"]["values"]
    assert len(values) == 2 * report.n_days
    inference = [v for v in values if v["phase"] == "inference"]
    assert inference[-1]["cumulative_cost_usd"] == pytest.approx(8760.0)
    assert rule["mark"]["type"] == "rule"
    assert rule["data"]["values"] == [{"day": 25, "label": "break-even: day 25"}]
    assert "typed in" in spec["title"]


def test_cumulative_chart_without_break_even_has_no_rule():
    from workbench.cost.charts import cumulative_cost_chart

    spec = cumulative_cost_chart(compute_cost(Scenario("p", INFERENCE, GRID))).to_dict()
    assert len(spec["layer"]) == 1


def test_scenario_bars_stack_training_and_inference():
    from workbench.cost.charts import scenario_bars_chart

    faster = replace(SCENARIO, name="fast", inference=replace(INFERENCE, energy_j_per_item=1.0))
    reports = [compute_cost(SCENARIO), compute_cost(faster)]
    spec = scenario_bars_chart(reports).to_dict()
    enc = spec["spec"]["encoding"]
    assert enc["y"]["stack"] == "zero"
    assert enc["color"]["field"] == "phase"
    assert spec["facet"]["column"]["field"] == "metric"
    data = spec["datasets"][spec["data"]["name"]]
    cost_rows = {
        (d["scenario"], d["phase"]): d["value"] for d in data if d["metric"] == "cost (USD)"
    }
    assert cost_rows[("hand", "inference")] == pytest.approx(8760.0)
    assert cost_rows[("hand", "training")] == pytest.approx(600.0)
    assert len(data) == 2 * 2 * 3


def test_tornado_chart_orders_inputs_by_swing(tmp_path):
    from workbench.cost.charts import save_chart, tornado_chart

    frame = sensitivity(SCENARIO)
    chart = tornado_chart(frame)
    spec = chart.to_dict()
    bars = spec["layer"][0]
    assert bars["encoding"]["y"]["sort"] == list(frame["input"])
    assert bars["encoding"]["x"]["field"] == "low_output"
    assert bars["encoding"]["x2"]["field"] == "high_output"
    # Offline HTML: the Vega libraries are inlined, nothing is fetched from a CDN.
    html = save_chart(chart, tmp_path / "tornado.html").read_text()
    assert "cdn.jsdelivr" not in html
    assert '<script src="http' not in html
    assert "vegaEmbed" in html
    with pytest.raises(ConfigError, match="sensitivity"):
        tornado_chart(frame[["input"]])
    with pytest.raises(ConfigError, match=r"\.html, \.svg"):
        save_chart(chart, tmp_path / "tornado.gif")


def test_docstring_examples_run():
    import doctest

    import workbench.cost.charts
    import workbench.cost.model
    import workbench.cost.savings
    import workbench.cost.scenarios
    import workbench.cost.tornado

    for module in (
        workbench.cost.model,
        workbench.cost.savings,
        workbench.cost.tornado,
        workbench.cost.charts,
        workbench.cost.scenarios,
    ):
        result = doctest.testmod(module)
        assert result.attempted > 0
        assert result.failed == 0, module.__name__
