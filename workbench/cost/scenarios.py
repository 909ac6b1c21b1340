"""Scenario files (YAML or TOML) and run-store figures turned into the inputs of
:mod:`workbench.cost.model`.

This is the edge of the cost model: it reads files and the run store; :mod:`workbench.cost.model`
stays pure. A scenario file has optional ``defaults`` merged into every scenario, then
``scenarios`` by name; each has up to four sections, ``training``, ``inference``, ``grid`` and
``training_grid`` (the site of training when it is not ``grid``), whose keys are the fields of
:class:`~workbench.cost.model.TrainingInputs`, :class:`~workbench.cost.model.InferenceInputs` and
:class:`~workbench.cost.model.GridInputs`. ``training: null`` means the model is not trained here.
The inference section may also name a ``run_id`` (its measured ``energy_j_per_item`` and
``throughput_items_per_s`` replace typed-in ones) and a ``cascade`` block (a small model in front
that escalates a fraction of items to this one).

Example file (YAML)::

    baseline: fp32
    defaults:
      grid: {electricity_usd_per_kwh: 0.15, pue: 1.4, carbon_g_per_kwh: 380}
      inference: {requests_per_day: 5.0e+6, lifetime_months: 36, instance_usd_per_h: 0.34}
    scenarios:
      fp32:
        inference: {energy_j_per_item: 0.8, throughput_items_per_s: 150}
      int8:
        inference: {run_id: 12}

Example
-------
>>> text = '''
... scenarios:
...   a:
...     grid: {electricity_usd_per_kwh: 0.1, pue: 1.2, carbon_g_per_kwh: 200}
...     inference: {requests_per_day: 1.0e+5, lifetime_months: 12, energy_j_per_item: 1.0,
...                 throughput_items_per_s: 100, instance_usd_per_h: 1.0}
... '''
>>> import yaml
>>> sorted(scenarios_from_dict(yaml.safe_load(text)).scenarios)
['a']
"""

from __future__ import annotations

import sys
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from typing import Any

from workbench.cost.model import (
    GridInputs,
    InferenceInputs,
    Scenario,
    TrainingInputs,
    cascade_effective,
    weakest_method,
)
from workbench.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SECTIONS: dict[str, type] = {
    "training": TrainingInputs,
    "inference": InferenceInputs,
    "grid": GridInputs,
    "training_grid": GridInputs,
}
TOP_KEYS = ("baseline", "defaults", "scenarios")
CASCADE_KEYS = (
    "small_energy_j_per_item",
    "small_throughput_items_per_s",
    "escalation_rate",
    "small_method",
)
_INT_FIELDS = {"n_accelerators", "min_instances", "run_id"}
_STR_FIELDS = {
    "region",
    "hardware",
    "carbon_method",
    "power_method",
    "energy_method",
    "throughput_method",
}


@dataclass
class ScenarioSet:
    """The scenarios of one file, in file order, and which one is the baseline."""

    scenarios: dict[str, Scenario]
    baseline: str
    source: str = "<dict>"


def _unknown(where: str, keys: Any, valid: Any, source: str) -> None:
    extra = [k for k in keys if k not in valid]
    if extra:
        raise ConfigError(
            f"{source}: unknown key {extra[0]!r} in {where}; valid keys: {', '.join(valid)}"
        )


def _coerce(name: str, value: Any) -> Any:
    """YAML reads ``1e6`` as a string; numbers written that way are taken as numbers."""
    if isinstance(value, str) and name not in _STR_FIELDS:
        try:
            value = float(value)
        except ValueError:
            return value
    if name in _INT_FIELDS and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def measured_figures(store: Any, run_id: int) -> dict[str, Any]:
    """``energy_j_per_item``, ``throughput_items_per_s`` and their methods from one stored run.

    Raises
    ------
    StoreError
        No run with this id.
    ConfigError
        The run has no energy or throughput figure.
    """
    run = store.get(run_id)
    metrics = run.metrics
    if metrics.get("energy_j_per_item") is None:
        raise ConfigError(
            f"run {run_id} ({run.kind}, {run.model}) has no energy_j_per_item figure; profile "
            "with `workbench profile --energy` and use that run's id"
        )
    if metrics.get("throughput_items_per_s") is None:
        raise ConfigError(
            f"run {run_id} ({run.kind}, {run.model}) has no throughput_items_per_s figure; "
            "profile with `workbench profile --energy` and use that run's id"
        )
    # A figure whose method was not recorded is not claimed as measured.
    energy_method = metrics.get("energy_method") or "estimated"
    return {
        "energy_j_per_item": metrics["energy_j_per_item"],
        "energy_method": energy_method,
        "throughput_items_per_s": metrics["throughput_items_per_s"],
        "throughput_method": "measured",
        "run_id": int(run_id),
    }


def inference_inputs_from_run(
    store: Any, run_id: int, base: InferenceInputs | None = None, **values: Any
) -> InferenceInputs:
    """Inference inputs whose energy and throughput come from a run in the run store.

    Parameters
    ----------
    store:
        A :class:`workbench.measure.store.RunStore`.
    run_id:
        A run with ``energy_j_per_item`` and ``throughput_items_per_s`` in its metrics
        (``workbench profile --energy`` records both).
    base:
        Inputs whose other fields are kept; without it, ``values`` must give the rest
        (``requests_per_day``, ``lifetime_months`` and a price).
    values:
        Further fields of :class:`~workbench.cost.model.InferenceInputs`.

    Example
    -------
    >>> from workbench.measure.store import RunStore
    >>> store = RunStore(":memory:")
    >>> rid = store.add("profile", model="m", fingerprint="f", config={},
    ...                 metrics={"energy_j_per_item": 0.4, "energy_method": "measured",
    ...                          "throughput_items_per_s": 250.0})
    >>> inf = inference_inputs_from_run(store, rid, requests_per_day=1e6, lifetime_months=24,
    ...                                 instance_usd_per_h=0.3)
    >>> inf.energy_j_per_item, inf.energy_method
    (0.4, 'measured')
    """
    figures = measured_figures(store, run_id)
    if base is not None:
        return replace(base, **{**figures, **values})
    try:
        return InferenceInputs(**{**values, **figures})
    except TypeError as exc:
        raise ConfigError(
            f"inference inputs from run {run_id}: {exc}; give requests_per_day, lifetime_months "
            "and instance_usd_per_h (or instance_purchase_usd)"
        ) from exc


def _build(cls: type, where: str, values: dict[str, Any], source: str) -> Any:
    names = [f.name for f in fields(cls)]
    _unknown(where, values, names, source)
    missing = [
        f.name
        for f in fields(cls)
        if f.default is MISSING and f.default_factory is MISSING and f.name not in values
    ]
    if missing:
        raise ConfigError(f"{source}: {where} is missing {', '.join(missing)}")
    try:
        return cls(**{k: _coerce(k, v) for k, v in values.items()})
    except ConfigError as exc:
        raise ConfigError(f"{source}: {where}: {exc}") from exc


def _inference(where: str, values: dict[str, Any], store: Any, source: str) -> InferenceInputs:
    values = dict(values)
    cascade = values.pop("cascade", None)
    run_id = values.get("run_id")
    if run_id is not None:
        if store is None:
            from workbench.measure.store import RunStore

            store = RunStore()
        values.update(measured_figures(store, int(_coerce("run_id", run_id))))
    if cascade is not None:
        if not isinstance(cascade, dict):
            raise ConfigError(f"{source}: {where}.cascade must be a mapping of {CASCADE_KEYS}")
        _unknown(f"{where}.cascade", cascade, CASCADE_KEYS, source)
        missing = [k for k in CASCADE_KEYS[:3] if k not in cascade]
        if missing:
            raise ConfigError(f"{source}: {where}.cascade is missing {', '.join(missing)}")
        large = _build(InferenceInputs, where, values, source)
        small_method = cascade.get("small_method", "typed in")
        try:
            energy, throughput = cascade_effective(
                _coerce("", cascade["small_energy_j_per_item"]),
                _coerce("", cascade["small_throughput_items_per_s"]),
                large.energy_j_per_item,
                large.throughput_items_per_s,
                _coerce("", cascade["escalation_rate"]),
            )
            return replace(
                large,
                energy_j_per_item=energy,
                throughput_items_per_s=throughput,
                energy_method=weakest_method(large.energy_method, small_method),
                throughput_method=weakest_method(large.throughput_method, small_method),
            )
        except (ConfigError, KeyError) as exc:
            raise ConfigError(f"{source}: {where}.cascade: {exc}") from exc
    return _build(InferenceInputs, where, values, source)


def scenarios_from_dict(
    data: Any,
    source: str = "<dict>",
    store: Any = None,
    run_ids: dict[str, int] | None = None,
) -> ScenarioSet:
    """Scenarios from parsed file content (see the module docstring for the layout).

    ``run_ids`` maps scenario names to run-store ids that replace those scenarios' inference
    figures (the name ``""`` stands for the baseline); ``store`` is the run store to read them
    from (default: the user's run store).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with keys {', '.join(TOP_KEYS)}")
    _unknown("the top level", data, TOP_KEYS, source)
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{source}: defaults must be a mapping of {', '.join(SECTIONS)}")
    _unknown("defaults", defaults, SECTIONS, source)
    raw = data.get("scenarios")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{source}: needs a 'scenarios' mapping with at least one scenario")
    raw = {str(name): body for name, body in raw.items()}
    baseline = str(data.get("baseline") or next(iter(raw)))
    if baseline not in raw:
        raise ConfigError(
            f"{source}: baseline {baseline!r} is not a scenario; pick one of {', '.join(raw)}"
        )
    run_ids = dict(run_ids or {})
    if "" in run_ids:
        run_ids.setdefault(baseline, run_ids.pop(""))
    for name in run_ids:
        if name not in raw:
            raise ConfigError(
                f"--run-id names scenario {name!r}, which is not in {source}; "
                f"pick one of {', '.join(raw)}"
            )

    scenarios: dict[str, Scenario] = {}
    for name, body in raw.items():
        body = body or {}
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: scenarios.{name} must be a mapping of sections")
        _unknown(f"scenarios.{name}", body, SECTIONS, source)
        parts: dict[str, Any] = {}
        for section in SECTIONS:
            where = f"scenarios.{name}.{section}"
            if section in body and body[section] is None:
                parts[section] = None
                continue
            merged = {**(defaults.get(section) or {}), **(body.get(section) or {})}
            if section == "inference" and name in run_ids:
                merged["run_id"] = run_ids[name]
            if not merged:
                parts[section] = None
                continue
            if section == "inference":
                _unknown(
                    where, merged, [*(f.name for f in fields(InferenceInputs)), "cascade"], source
                )
                parts[section] = _inference(where, merged, store, source)
            else:
                parts[section] = _build(SECTIONS[section], where, merged, source)
        for section in ("inference", "grid"):
            if parts[section] is None:
                raise ConfigError(f"{source}: scenarios.{name} needs a {section} section")
        scenarios[name] = Scenario(name=name, **parts)

    return ScenarioSet(scenarios=scenarios, baseline=baseline, source=source)


def load_scenarios(
    path: str | Path, store: Any = None, run_ids: dict[str, int] | None = None
) -> ScenarioSet:
    """Read a scenario file (``.yaml``/``.yml`` or ``.toml``) into cost-model inputs.

    Example
    -------
    >>> sset = load_scenarios("examples/scenarios.yaml")  # doctest: +SKIP
    >>> list(sset.scenarios)  # doctest: +SKIP
    ['baseline', 'optimised', 'optimised+cascade+cache', 'optimised-nordic']
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"scenario file {path} does not exist; give the path of a .yaml or .toml")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    elif suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    else:
        raise ConfigError(f"scenario file {path} must end in .yaml, .yml or .toml")
    return scenarios_from_dict(data, source=str(path), store=store, run_ids=run_ids)
