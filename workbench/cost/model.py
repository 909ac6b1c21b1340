"""Lifecycle cost: training against inference in money, energy and carbon over a model's life.

Pure functions over dataclasses: inputs in, numbers out, no I/O. A :class:`Scenario` is one
:class:`InferenceInputs`, one :class:`GridInputs` (the site inference runs at), optionally one
:class:`TrainingInputs` and a second :class:`GridInputs` for training elsewhere;
:func:`compute_cost` turns it into a :class:`CostReport` at daily resolution.
:mod:`workbench.cost.savings` (scenarios against each other) and :mod:`workbench.cost.tornado`
(sensitivity to each input) build on it. Reading files and the run store lives in
:mod:`workbench.cost.scenarios`; charts in :mod:`workbench.cost.charts`.

The model
---------
Time runs in days ``d = 0 .. N-1`` with ``N = round(lifetime_months * 30.4375)`` (a month is
365.25 / 12 days). Money is in one currency, called USD in the field names.

Training, at ``training_grid`` if given, else ``grid`` (Green Algorithms: Lannelongue et al. 2021,
Adv. Sci. 8, 2100707). Energy of one training, in kWh at the wall::

    E_train = (accelerator_hours * accelerator_power_w * usage
               + wall_hours * memory_gb * memory_w_per_gb) / 1000 * PUE * pragmatic_scaling_factor
    wall_hours = accelerator_hours / n_accelerators

A training happens on day 0 and again every ``retrain_every_months`` (if set) before the end of
the lifetime. Its money is ``accelerator_hours * PSF * accelerator_usd_per_h`` for rented hardware
(electricity included in the price), or the amortised purchase price per device-hour plus
``E_train * electricity_usd_per_kwh`` for owned hardware.

Inference, per day ``d``::

    requests[d]  = requests_per_day * (1 + requests_growth_per_month) ** (d / 30.4375)
    served[d]    = requests[d] * (1 - cache_hit_rate)            # cache hits cost nothing
    capacity     = 86400 * throughput_items_per_s * utilisation  # items per instance-day
    instances[d] = max(min_instances, ceil(served[d] / capacity))
    busy_s[d]    = served[d] / throughput_items_per_s            # instance-seconds busy
    idle_s[d]    = instances[d] * 86400 - busy_s[d]
    E_it[d]      = served[d] * energy_j_per_item + idle_power_w * idle_s[d]     # J
    kWh[d]       = E_it[d] / 3.6e6 * PUE
    USD[d]       = instances[d] * 24 * instance_usd_per_h        (rented: electricity included)
                 = instances[d] * 24 * purchase / (amortise_months * 730.5)
                   + kWh[d] * electricity_usd_per_kwh             (owned)

``energy_j_per_item`` is the energy per item while serving (a meter's reading over a loaded
window divided by the items), so power under load ``energy_j_per_item * throughput`` must be at
least the idle draw. Carbon: ``tCO2e = kWh * carbon_g_per_kwh / 1e6``.

Outputs: per-month and total money, kWh and tCO2e for training and inference; inference's share
of the lifecycle; the break-even day (the first day on which cumulative inference cost reaches
cumulative training cost, counted from 1); cost per million predictions; savings of one scenario
against another. Every figure that can be measured carries its method (``measured``,
``estimated`` or ``typed in``) into the report.

Example
-------
>>> scenario = Scenario(
...     name="demo",
...     training=TrainingInputs(accelerator_hours=100, accelerator_power_w=300,
...                             accelerator_usd_per_h=2.0),
...     inference=InferenceInputs(requests_per_day=1e6, lifetime_months=12,
...                               energy_j_per_item=0.5, throughput_items_per_s=200,
...                               instance_usd_per_h=0.5),
...     grid=GridInputs(electricity_usd_per_kwh=0.15, pue=1.2, carbon_g_per_kwh=300),
... )
>>> report = compute_cost(scenario)
>>> round(report.training_cost_usd, 2)
200.0
>>> report.break_even_day
17
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from workbench.checks import fraction, number, one_of, whole
from workbench.errors import ConfigError
from workbench.provenance import METHODS, weakest_method
from workbench.units import (
    DAYS_PER_MONTH,
    DRAM_W_PER_GB,
    HOURS_PER_MONTH,
    J_PER_KWH,
    SECONDS_PER_DAY,
)

_FRACTION_FIX = "give it as a fraction (0.6 for 60 %)"


def _price(owner: str, prefix: str, per_h: float | None, purchase: float | None) -> None:
    """Exactly one way to pay for hardware: rented per hour, or owned and amortised."""
    if (per_h is None) == (purchase is None):
        raise ConfigError(
            f"{owner} needs exactly one of {prefix}_usd_per_h (rented, electricity included) or "
            f"{prefix}_purchase_usd (owned, amortised, electricity billed separately); "
            f"got {'both' if per_h is not None else 'neither'}"
        )
    if per_h is not None:
        name, value, fix = f"{prefix}_usd_per_h", per_h, "give the hourly price of one device"
    else:
        name, value, fix = f"{prefix}_purchase_usd", purchase, "give the price of one device"
    number(name, value, minimum=0, open_low=True, owner=owner, fix=fix)


@dataclass(frozen=True)
class GridInputs:
    """The site where training and inference run.

    Attributes
    ----------
    electricity_usd_per_kwh:
        Price of electricity at the wall, USD per kWh (billed for owned hardware only).
    pue:
        Power usage effectiveness of the data centre (>= 1; 1.0 for a desktop).
    carbon_g_per_kwh:
        Grid carbon intensity, gCO2e per kWh.
    region:
        A label for the site.
    carbon_method:
        Where ``carbon_g_per_kwh`` came from (``measured``, ``estimated`` or ``typed in``).
    """

    electricity_usd_per_kwh: float
    pue: float
    carbon_g_per_kwh: float
    region: str = ""
    carbon_method: str = "typed in"

    def __post_init__(self) -> None:
        o = "grid"
        number("electricity_usd_per_kwh", self.electricity_usd_per_kwh, minimum=0, open_low=True,
               owner=o, fix="give the electricity price per kWh")  # fmt: skip
        number("pue", self.pue, minimum=1, owner=o,
               fix="PUE is facility energy over IT energy: use 1.0 for hardware outside a data "
                   "centre, about 1.1-1.6 for data centres")  # fmt: skip
        number("carbon_g_per_kwh", self.carbon_g_per_kwh, minimum=0, owner=o,
               fix="give the grid's carbon intensity in gCO2e/kWh")  # fmt: skip
        one_of("carbon_method", self.carbon_method, METHODS, owner=o)


@dataclass(frozen=True)
class TrainingInputs:
    """One training of the model, and how often it is repeated.

    Attributes
    ----------
    accelerator_hours:
        Device-hours of one training (devices x wall-clock hours).
    accelerator_power_w:
        Average draw of one device while training, W (TDP if nothing better is known).
    accelerator_usd_per_h:
        Rental price of one device-hour (electricity included); or give
        ``accelerator_purchase_usd`` for owned hardware.
    accelerator_purchase_usd:
        Purchase price of one owned device, amortised over ``amortise_months``.
    amortise_months:
        Months over which owned hardware is written off.
    n_accelerators:
        Devices used in parallel (sets the wall-clock time for the memory term).
    usage:
        Green Algorithms' core usage factor, a fraction in (0, 1].
    memory_gb:
        Memory available to the job, GB.
    memory_w_per_gb:
        Draw of memory, W per GB.
    pragmatic_scaling_factor:
        How many full runs one training really takes (tuning, failed attempts): Green
        Algorithms' PSF.
    retrain_every_months:
        Months between retrainings; ``None`` trains once, at the start.
    power_method:
        Where ``accelerator_power_w`` came from.
    hardware:
        A label for the devices.
    """

    accelerator_hours: float
    accelerator_power_w: float
    accelerator_usd_per_h: float | None = None
    accelerator_purchase_usd: float | None = None
    amortise_months: float = 36.0
    n_accelerators: int = 1
    usage: float = 1.0
    memory_gb: float = 0.0
    memory_w_per_gb: float = DRAM_W_PER_GB
    pragmatic_scaling_factor: float = 1.0
    retrain_every_months: float | None = None
    power_method: str = "typed in"
    hardware: str = ""

    def __post_init__(self) -> None:
        o = "training"
        for name, fix in (
            ("accelerator_hours", "give the device-hours of one training run"),
            ("accelerator_power_w", "give the average draw of one device in W"),
            ("amortise_months", "give the months over which hardware is written off"),
            ("pragmatic_scaling_factor", "use 1 for a single run"),
        ):
            number(name, getattr(self, name), minimum=0, open_low=True, owner=o, fix=fix)
        _price(o, "accelerator", self.accelerator_usd_per_h, self.accelerator_purchase_usd)
        whole("n_accelerators", self.n_accelerators, minimum=1, owner=o,
              fix="give the devices used in parallel")  # fmt: skip
        fraction("usage", self.usage, open_low=True, owner=o, fix=_FRACTION_FIX)
        number("memory_gb", self.memory_gb, minimum=0, owner=o,
               fix="give the memory available in GB")  # fmt: skip
        number("memory_w_per_gb", self.memory_w_per_gb, minimum=0, owner=o,
               fix=f"the Green Algorithms default is {DRAM_W_PER_GB} W/GB")  # fmt: skip
        if self.retrain_every_months is not None:
            number("retrain_every_months", self.retrain_every_months, minimum=0, open_low=True,
                   owner=o, fix="leave it out (null) to train once")  # fmt: skip
        one_of("power_method", self.power_method, METHODS, owner=o)

    @property
    def owned(self) -> bool:
        return self.accelerator_purchase_usd is not None

    @property
    def usd_per_device_h(self) -> float:
        """Rental price, or purchase price amortised per device-hour."""
        if self.accelerator_purchase_usd is not None:
            return self.accelerator_purchase_usd / (self.amortise_months * HOURS_PER_MONTH)
        return float(self.accelerator_usd_per_h)


@dataclass(frozen=True)
class InferenceInputs:
    """The deployed model: traffic, lifetime, measured efficiency and how it is paid for.

    Attributes
    ----------
    requests_per_day:
        Predictions requested per day at launch.
    lifetime_months:
        How long the model serves.
    energy_j_per_item:
        Energy per prediction while serving, J (from ``workbench profile --energy``).
    throughput_items_per_s:
        Predictions per second one instance sustains.
    instance_usd_per_h:
        Rental price of one instance-hour (electricity included); or give
        ``instance_purchase_usd`` for owned hardware.
    instance_purchase_usd:
        Purchase price of one owned instance, amortised over ``amortise_months``.
    amortise_months:
        Months over which owned hardware is written off.
    requests_growth_per_month:
        Compound growth of traffic per month, a fraction (0.05 for 5 %; negative for decline).
    utilisation:
        Target average utilisation of provisioned instances, in (0, 1] (headroom for peaks).
    idle_power_w:
        Draw of one provisioned instance while idle, W.
    min_instances:
        Instances kept provisioned whatever the traffic.
    cache_hit_rate:
        Fraction of requests answered from a cache without running the model, in [0, 1).
    energy_method, throughput_method:
        Where ``energy_j_per_item`` and ``throughput_items_per_s`` came from.
    run_id:
        The run-store id the measured figures came from, if any.
    hardware:
        A label for the instances.
    """

    requests_per_day: float
    lifetime_months: float
    energy_j_per_item: float
    throughput_items_per_s: float
    instance_usd_per_h: float | None = None
    instance_purchase_usd: float | None = None
    amortise_months: float = 36.0
    requests_growth_per_month: float = 0.0
    utilisation: float = 0.5
    idle_power_w: float = 0.0
    min_instances: int = 1
    cache_hit_rate: float = 0.0
    energy_method: str = "typed in"
    throughput_method: str = "typed in"
    run_id: int | None = None
    hardware: str = ""

    def __post_init__(self) -> None:
        o = "inference"
        for name, fix in (
            ("requests_per_day", "give the predictions requested per day at launch"),
            ("lifetime_months", "give how many months the model serves"),
            ("energy_j_per_item", "measure it with `workbench profile --energy` or estimate it"),
            ("throughput_items_per_s", "measure it with `workbench profile` or estimate it"),
            ("amortise_months", "give the months over which hardware is written off"),
        ):
            number(name, getattr(self, name), minimum=0, open_low=True, owner=o, fix=fix)
        _price(o, "instance", self.instance_usd_per_h, self.instance_purchase_usd)
        number("requests_growth_per_month", self.requests_growth_per_month, minimum=-1,
               open_low=True, owner=o,
               fix="give monthly growth as a fraction (0.05 = 5 %)")  # fmt: skip
        fraction("utilisation", self.utilisation, open_low=True, owner=o, fix=_FRACTION_FIX)
        number("idle_power_w", self.idle_power_w, minimum=0, owner=o,
               fix="use 0 if idle draw is unknown")  # fmt: skip
        whole("min_instances", self.min_instances, minimum=0, owner=o,
              fix="give the instances kept up whatever the traffic (0 for none)")  # fmt: skip
        fraction("cache_hit_rate", self.cache_hit_rate, open_high=True, owner=o, fix=_FRACTION_FIX)
        one_of("energy_method", self.energy_method, METHODS, owner=o)
        one_of("throughput_method", self.throughput_method, METHODS, owner=o)
        load_w = self.energy_j_per_item * self.throughput_items_per_s
        if self.idle_power_w > load_w * (1 + 1e-9):
            raise ConfigError(
                f"inference.idle_power_w ({self.idle_power_w} W) exceeds the power under load "
                f"implied by energy_j_per_item x throughput_items_per_s ({load_w:.4g} W); "
                "energy_j_per_item must be the whole energy per item while serving, not the "
                "energy above idle"
            )

    @property
    def owned(self) -> bool:
        return self.instance_purchase_usd is not None

    @property
    def usd_per_instance_h(self) -> float:
        """Rental price, or purchase price amortised per instance-hour."""
        if self.instance_purchase_usd is not None:
            return self.instance_purchase_usd / (self.amortise_months * HOURS_PER_MONTH)
        return float(self.instance_usd_per_h)


@dataclass(frozen=True)
class Scenario:
    """One way of training and serving the model.

    ``training=None`` for a model not trained here; ``training_grid`` is the site of training
    when it differs from ``grid`` (the site of inference).
    """

    name: str
    inference: InferenceInputs
    grid: GridInputs
    training: TrainingInputs | None = None
    training_grid: GridInputs | None = None

    @property
    def grid_for_training(self) -> GridInputs:
        return self.training_grid if self.training_grid is not None else self.grid


def green_algorithms_energy_kwh(
    runtime_h: float,
    n_cores: float,
    core_power_w: float,
    memory_gb: float = 0.0,
    *,
    usage: float = 1.0,
    memory_w_per_gb: float = DRAM_W_PER_GB,
    pue: float = 1.0,
    pragmatic_scaling_factor: float = 1.0,
) -> float:
    """Energy of a computation by the Green Algorithms formula (Lannelongue et al. 2021), kWh.

    ``E = t * (n_c * P_c * u_c + n_m * P_m) * PUE * PSF / 1000``

    >>> round(green_algorithms_energy_kwh(10, 4, 10.0, 8, pue=1.5), 4)  # 10 h x 42.98 W x 1.5
    0.6447
    """
    power_w = n_cores * core_power_w * usage + memory_gb * memory_w_per_gb
    return runtime_h * power_w * pue * pragmatic_scaling_factor / 1000.0


def cascade_effective(
    small_energy_j_per_item: float,
    small_throughput_items_per_s: float,
    large_energy_j_per_item: float,
    large_throughput_items_per_s: float,
    escalation_rate: float,
) -> tuple[float, float]:
    """Energy per item and throughput of a two-model cascade sharing one instance.

    Every item runs the small model; a fraction ``escalation_rate`` also runs the large one.

    Returns
    -------
    (energy_j_per_item, throughput_items_per_s)

    >>> [round(x, 3) for x in cascade_effective(0.1, 1000.0, 1.0, 100.0, 0.2)]
    [0.3, 333.333]
    """
    fraction("escalation_rate", escalation_rate, owner="cascade", fix=_FRACTION_FIX)
    for name, value in (
        ("small_energy_j_per_item", small_energy_j_per_item),
        ("small_throughput_items_per_s", small_throughput_items_per_s),
    ):
        number(name, value, minimum=0, open_low=True, owner="cascade",
               fix="measure the small model with `workbench profile`")  # fmt: skip
    energy = small_energy_j_per_item + escalation_rate * large_energy_j_per_item
    seconds = 1.0 / small_throughput_items_per_s + escalation_rate / large_throughput_items_per_s
    return energy, 1.0 / seconds


def training_energy_kwh(training: TrainingInputs, grid: GridInputs) -> float:
    """Energy of one training at the wall (PUE and PSF included), kWh."""
    return green_algorithms_energy_kwh(
        training.accelerator_hours / training.n_accelerators,
        training.n_accelerators,
        training.accelerator_power_w,
        training.memory_gb,
        usage=training.usage,
        memory_w_per_gb=training.memory_w_per_gb,
        pue=grid.pue,
        pragmatic_scaling_factor=training.pragmatic_scaling_factor,
    )


def training_cost_usd(training: TrainingInputs, grid: GridInputs) -> float:
    """Money for one training: device-hours at the hourly (or amortised) price, plus electricity
    for owned hardware."""
    usd = training.accelerator_hours * training.pragmatic_scaling_factor * training.usd_per_device_h
    if training.owned:
        usd += training_energy_kwh(training, grid) * grid.electricity_usd_per_kwh
    return usd


@dataclass
class CostReport:
    """The lifecycle of one scenario, at daily resolution, with totals.

    Daily arrays (length ``n_days``) are in ``daily``; ``monthly`` sums them per month.
    Money in USD, energy in kWh at the wall, carbon in tCO2e.
    """

    scenario: str
    n_days: int
    daily: dict[str, np.ndarray] = field(repr=False)
    training_cost_usd: float
    inference_cost_usd: float
    training_energy_kwh: float
    inference_energy_kwh: float
    training_co2_t: float
    inference_co2_t: float
    total_requests: float
    break_even_day: int | None
    methods: dict[str, str]

    @property
    def total_cost_usd(self) -> float:
        return self.training_cost_usd + self.inference_cost_usd

    @property
    def total_energy_kwh(self) -> float:
        return self.training_energy_kwh + self.inference_energy_kwh

    @property
    def total_co2_t(self) -> float:
        return self.training_co2_t + self.inference_co2_t

    @property
    def inference_share(self) -> float:
        """Inference's share of lifecycle money, a fraction."""
        return _share(self.inference_cost_usd, self.total_cost_usd)

    @property
    def inference_energy_share(self) -> float:
        return _share(self.inference_energy_kwh, self.total_energy_kwh)

    @property
    def inference_co2_share(self) -> float:
        return _share(self.inference_co2_t, self.total_co2_t)

    @property
    def inference_usd_per_million(self) -> float:
        """Inference money per million predictions requested (cache hits included)."""
        return self.inference_cost_usd / self.total_requests * 1e6

    @property
    def lifecycle_usd_per_million(self) -> float:
        """Training and inference money per million predictions requested."""
        return self.total_cost_usd / self.total_requests * 1e6

    @property
    def training_method(self) -> str:
        return self.methods.get("training.accelerator_power_w", "typed in")

    @property
    def inference_method(self) -> str:
        return weakest_method(
            self.methods["inference.energy_j_per_item"],
            self.methods["inference.throughput_items_per_s"],
        )

    @property
    def method(self) -> str:
        """The weakest method behind the energy figures (carbon intensity aside)."""
        if "training.accelerator_power_w" in self.methods:
            return weakest_method(self.training_method, self.inference_method)
        return self.inference_method

    @cached_property
    def monthly(self) -> pd.DataFrame:
        """Per-month sums (month 0 is the first month) with cumulative money."""
        return _monthly_frame(self.daily, self.n_days)

    def summary(self) -> pd.DataFrame:
        """Rows training / inference / total with money, energy, carbon, share and method."""
        return pd.DataFrame(
            {
                "phase": ["training", "inference", "total"],
                "cost_usd": [self.training_cost_usd, self.inference_cost_usd, self.total_cost_usd],
                "energy_kwh": [
                    self.training_energy_kwh,
                    self.inference_energy_kwh,
                    self.total_energy_kwh,
                ],
                "co2_t": [self.training_co2_t, self.inference_co2_t, self.total_co2_t],
                "cost_share": [1.0 - self.inference_share, self.inference_share, 1.0],
                "method": [
                    self.training_method if "training.accelerator_power_w" in self.methods else "",
                    self.inference_method,
                    self.method,
                ],
            }
        )

    def to_row(self) -> dict[str, Any]:
        """Headline figures as one flat row (for scenario tables)."""
        return {
            "scenario": self.scenario,
            "training_cost_usd": self.training_cost_usd,
            "inference_cost_usd": self.inference_cost_usd,
            "total_cost_usd": self.total_cost_usd,
            "total_energy_kwh": self.total_energy_kwh,
            "total_co2_t": self.total_co2_t,
            "inference_share": self.inference_share,
            "break_even_day": self.break_even_day,
            "inference_usd_per_million": self.inference_usd_per_million,
            "lifecycle_usd_per_million": self.lifecycle_usd_per_million,
            "method": self.method,
        }


def _share(part: float, whole: float) -> float:
    return part / whole if whole > 0 else 0.0


def n_days_for(lifetime_months: float) -> int:
    """Days simulated for a lifetime in months (at least one)."""
    return max(1, round(lifetime_months * DAYS_PER_MONTH))


def compute_cost(scenario: Scenario) -> CostReport:
    """The lifecycle report of one scenario (see the module docstring for the model).

    One call for a 5-year daily horizon takes well under a millisecond (numpy throughout;
    ``benchmarks/cost.py`` times it).
    """
    inf, grid, tr = scenario.inference, scenario.grid, scenario.training
    tgrid = scenario.grid_for_training
    n = n_days_for(inf.lifetime_months)
    requests, instances, inf_kwh, inf_usd = _inference_days(inf, grid, n)
    train_kwh, train_usd = np.zeros(n), np.zeros(n)
    if tr is not None:
        run_days = _training_days(tr, inf.lifetime_months, n)
        np.add.at(train_kwh, run_days, training_energy_kwh(tr, tgrid))
        np.add.at(train_usd, run_days, training_cost_usd(tr, tgrid))

    t_per_kwh = grid.carbon_g_per_kwh / 1e6
    train_t_per_kwh = tgrid.carbon_g_per_kwh / 1e6
    cum_train = np.cumsum(train_usd)
    cum_inf = np.cumsum(inf_usd)
    daily = {
        "requests": requests,
        "instances": instances,
        "training_cost_usd": train_usd,
        "inference_cost_usd": inf_usd,
        "training_energy_kwh": train_kwh,
        "inference_energy_kwh": inf_kwh,
        "training_co2_t": train_kwh * train_t_per_kwh,
        "inference_co2_t": inf_kwh * t_per_kwh,
        "cumulative_training_cost_usd": cum_train,
        "cumulative_inference_cost_usd": cum_inf,
    }
    train_kwh_total = float(train_kwh.sum())
    inf_kwh_total = float(inf_kwh.sum())
    return CostReport(
        scenario=scenario.name,
        n_days=n,
        daily=daily,
        training_cost_usd=float(cum_train[-1]),
        inference_cost_usd=float(cum_inf[-1]),
        training_energy_kwh=train_kwh_total,
        inference_energy_kwh=inf_kwh_total,
        training_co2_t=train_kwh_total * train_t_per_kwh,
        inference_co2_t=inf_kwh_total * t_per_kwh,
        total_requests=float(requests.sum()),
        break_even_day=None if tr is None else _break_even_day(cum_train, cum_inf),
        methods=_methods(scenario),
    )


def _inference_days(
    inf: InferenceInputs, grid: GridInputs, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per day: requests, instances, kWh at the wall and money of serving."""
    days = np.arange(n, dtype=np.float64)
    requests = inf.requests_per_day * np.power(
        1.0 + inf.requests_growth_per_month, days / DAYS_PER_MONTH
    )
    served = requests * (1.0 - inf.cache_hit_rate)
    capacity_per_instance = SECONDS_PER_DAY * inf.throughput_items_per_s * inf.utilisation
    instances = np.maximum(float(inf.min_instances), np.ceil(served / capacity_per_instance))
    busy_s = served / inf.throughput_items_per_s
    idle_s = np.maximum(instances * SECONDS_PER_DAY - busy_s, 0.0)
    kwh = (served * inf.energy_j_per_item + inf.idle_power_w * idle_s) / J_PER_KWH * grid.pue
    usd = instances * (24.0 * inf.usd_per_instance_h)
    if inf.owned:
        usd = usd + kwh * grid.electricity_usd_per_kwh
    return requests, instances, kwh, usd


def _training_days(training: TrainingInputs, lifetime_months: float, n: int) -> np.ndarray:
    """The days (0-based, before day ``n``) on which a training starts."""
    if training.retrain_every_months is None:
        return np.zeros(1, dtype=np.int64)
    # A retraining due exactly at the end of the lifetime does not happen.
    n_runs = math.ceil(lifetime_months / training.retrain_every_months - 1e-9)
    step = training.retrain_every_months * DAYS_PER_MONTH
    run_days = np.floor(np.arange(n_runs) * step).astype(np.int64)
    return run_days[run_days < n]


def _break_even_day(cum_train: np.ndarray, cum_inf: np.ndarray) -> int | None:
    """The first day (from 1) on which cumulative inference money reaches training's."""
    reached = cum_inf >= cum_train
    return int(np.argmax(reached)) + 1 if reached.any() else None


def _methods(scenario: Scenario) -> dict[str, str]:
    """Where each measurable input came from, keyed ``part.field``."""
    inf, tr = scenario.inference, scenario.training
    methods = {
        "inference.energy_j_per_item": inf.energy_method,
        "inference.throughput_items_per_s": inf.throughput_method,
        "grid.carbon_g_per_kwh": scenario.grid.carbon_method,
    }
    if tr is not None:
        methods["training.accelerator_power_w"] = tr.power_method
        if scenario.training_grid is not None:
            methods["training_grid.carbon_g_per_kwh"] = scenario.training_grid.carbon_method
    return methods


_SUMMED = (
    "requests",
    "training_cost_usd",
    "inference_cost_usd",
    "training_energy_kwh",
    "inference_energy_kwh",
    "training_co2_t",
    "inference_co2_t",
)


def _monthly_frame(daily: dict[str, np.ndarray], n_days: int) -> pd.DataFrame:
    month_of_day = np.floor(np.arange(n_days) / DAYS_PER_MONTH).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, np.diff(month_of_day) > 0])
    frame = {"month": month_of_day[starts], "days": np.diff(np.r_[starts, n_days])}
    for key in _SUMMED:
        frame[key] = np.add.reduceat(daily[key], starts)
    frame["instances_max"] = np.maximum.reduceat(daily["instances"], starts)
    out = pd.DataFrame(frame)
    out["cumulative_training_cost_usd"] = out["training_cost_usd"].cumsum()
    out["cumulative_inference_cost_usd"] = out["inference_cost_usd"].cumsum()
    return out
