"""The bundle's Prometheus alert rules (``deploy/prometheus/alerts.yaml``): p99 latency over the
SLO, projected monthly cost over the budget, requests refused as overloaded, and drift of the
live figures the runtime meters (J/prediction, cost per 1M predictions) above the profile's.

The rules read the series the runtime exports (:mod:`serving.metrics`), filtered on the served
model's name; load the file as a Prometheus rule file (:func:`alert_rules_yaml` writes it).

The live rules, per server (``job``, ``instance``: the live series carry no model label, as a
server meters its whole process, so they are joined on the target to the predictions of this
model), over :data:`LIVE_WINDOW` and firing after :data:`LIVE_FOR`:

- ``<Name>LiveEnergyPerPredictionDrift``: ``rate(serving_live_energy_joules_total)`` summed over
  components / ``rate(serving_predictions_total)`` above the profile's ``energy_j_per_item`` x
  (1 + :data:`ENERGY_DRIFT`);
- ``<Name>LiveCostPer1MDrift``: instance price / (3600 x predictions per second) x 1e6 above
  the manifest's cost per 1M x (1 + :data:`COST_DRIFT`).

A server with no predictions in the window has no J/prediction and does not fire. When the
manifest lacks a figure a rule needs, the rule is left out and the file says why in a comment
(:func:`skipped_rules`).

Example
-------
>>> from serving.manifest import Cost, Manifest, Slo
>>> rules = alert_rules(Manifest(name="digits-mlp", models=(), slo=Slo(p99_ms=20)))
>>> [rule["alert"] for rule in rules["groups"][0]["rules"]]
['DigitsMlpP99OverSLO', 'DigitsMlpOverloaded']
>>> m = Manifest(name="digits-mlp", models=(), profile={"energy_j_per_item": 0.002},
...              cost=Cost(usd_per_million=0.3, instance_usd_per_h=0.1))
>>> live = {r["alert"]: r["expr"] for r in alert_rules(m)["groups"][0]["rules"]}
>>> live["DigitsMlpLiveEnergyPerPredictionDrift"].endswith("> 0.0024")  # 0.002 J x 1.2
True
>>> live["DigitsMlpLiveCostPer1MDrift"].endswith("> 0.36")  # 0.3 USD x 1.2
True
>>> [reason.split(":")[0] for reason in skipped_rules(Manifest(name="digits-mlp", models=()))]
['DigitsMlpLiveEnergyPerPredictionDrift', 'DigitsMlpLiveCostPer1MDrift']
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from serving.manifest import Manifest
from workbench.errors import ConfigError
from workbench.units import HOURS_PER_MONTH

#: Live J/prediction may exceed the profile's by this share before the alert fires: 20 % is
#: above the run-to-run spread of an energy reading on a quiet host and below the cost of idle
#: time at half load, the drift the rule is there to catch.
ENERGY_DRIFT = 0.20
#: Live cost per 1M predictions may exceed the manifest's by this share (20 %: traffic a fifth
#: below what the cost was planned at).
COST_DRIFT = 0.20
#: The window live rates are taken over, and how long a drift must last before it fires.
LIVE_WINDOW = "10m"
LIVE_FOR = "15m"
#: The labels a live figure is kept per: one server process (a Prometheus scrape target).
PER_SERVER = "job, instance"
#: The meters a server found, for the alert text (a Prometheus template query).
_METERS = (
    '{{ range printf `serving_live_meter_info{instance="%s"}` $labels.instance | query }}'
    "{{ .Labels.component }}: {{ .Labels.meter }} ({{ .Labels.method }}); {{ end }}"
)


def alert_rules(
    m: Manifest, *, energy_drift: float = ENERGY_DRIFT, cost_drift: float = COST_DRIFT
) -> dict[str, Any]:
    """Prometheus rules: p99 over the SLO, live J/prediction and cost per 1M over the profile's
    by more than ``energy_drift`` / ``cost_drift``, monthly cost over the budget, overload."""
    for label, share in (("energy_drift", energy_drift), ("cost_drift", cost_drift)):
        if not (isinstance(share, (int, float)) and 0 < share < math.inf):
            raise ConfigError(f"{label}={share!r} must be a share > 0, e.g. 0.2 for 20 %")
    sel = f'model="{m.name}"'
    title = _title(m)
    rules: list[dict[str, Any]] = []
    if m.slo.p99_ms is not None:
        rules.append(
            {
                "alert": f"{title}P99OverSLO",
                "expr": f"histogram_quantile(0.99, sum by (le) (rate(serving_request_seconds_bucket"
                f"{{{sel}}}[5m]))) > {m.slo.p99_ms / 1000:g}",
                "for": "10m",
                "labels": {"severity": "page"},
                "annotations": {
                    "summary": f"{m.name}: p99 latency above the {m.slo.p99_ms:g} ms SLO",
                    "description": "p99 of the server-side request time over 5 minutes "
                    "(from histogram buckets, an estimate).",
                },
            }
        )
    energy, cost = _energy_figure(m), _cost_figures(m)
    if energy is not None:
        rules.append(_energy_rule(m, (title, sel), energy, energy_drift))
    if cost is not None:
        rules.append(_cost_rule(m, (title, sel), cost, cost_drift))
    if m.cost.monthly_budget_usd is not None:
        rules.extend(_budget_rules(m, title, sel))
    rules.append(
        {
            "alert": f"{title}Overloaded",
            "expr": f'sum(rate(serving_failures_total{{{sel},reason="overloaded"}}[5m])) > 0',
            "for": "5m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": f"{m.name}: requests refused with 503 (queue full); scale out"
            },
        }
    )
    return {"groups": [{"name": f"{m.name}-serving", "rules": rules}]}


def skipped_rules(m: Manifest) -> list[str]:
    """The live rules :func:`alert_rules` leaves out for want of a figure, each with why."""
    title = _title(m)
    out = []
    if _energy_figure(m) is None:
        value = m.profile.get("energy_j_per_item")
        why = (
            "the manifest has no profile.energy_j_per_item (export with a profile that "
            "measured or estimated energy)"
            if value is None
            else f"profile.energy_j_per_item={value!r} is not a number > 0"
        )
        if value is None and m.cascade is not None:
            why = "a cascade has per-model energy figures only, and its mix varies with traffic"
        out.append(f"{title}LiveEnergyPerPredictionDrift: {why}")
    if _cost_figures(m) is None:
        missing = [
            f"cost.{k}"
            for k in ("instance_usd_per_h", "usd_per_million")
            if not _positive(getattr(m.cost, k))
        ]
        out.append(
            f"{title}LiveCostPer1MDrift: the manifest has no {' or '.join(missing)} "
            "(export with instance_usd_per_h and a profile's throughput)"
        )
    return out


def alert_rules_yaml(m: Manifest, **drifts: float) -> str:
    """The rule file's text: :func:`alert_rules` as YAML, after a comment per skipped rule."""
    head = [f"# Prometheus alert rules for {m.name}, written by workbench export."]
    head += [f"# skipped {reason}" for reason in skipped_rules(m)]
    body = yaml.dump(alert_rules(m, **drifts), Dumper=_PlainDumper, sort_keys=False, width=1000)
    return "\n".join(head) + "\n" + body


class _PlainDumper(yaml.SafeDumper):
    """Writes a value shared by two keys twice, never as a YAML anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _title(m: Manifest) -> str:
    return "".join(part.capitalize() for part in m.name.replace("_", "-").split("-"))


def _num(value: float) -> str:
    """A number as the rules write it: 6 significant digits (PromQL reads ``1e-05`` too)."""
    return f"{value:.6g}"


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf


def _energy_figure(m: Manifest) -> float | None:
    value = m.profile.get("energy_j_per_item")
    return float(value) if _positive(value) else None


def _cost_figures(m: Manifest) -> tuple[float, float] | None:
    price, per_million = m.cost.instance_usd_per_h, m.cost.usd_per_million
    if _positive(price) and _positive(per_million):
        return float(price), float(per_million)
    return None


def _predictions_rate(sel: str) -> str:
    """Predictions per second per server over the window, servers with none left out."""
    return f"(sum by ({PER_SERVER}) (rate(serving_predictions_total{{{sel}}}[{LIVE_WINDOW}])) > 0)"


def _energy_rule(
    m: Manifest, names: tuple[str, str], figure: float, drift: float
) -> dict[str, Any]:
    """Live J/prediction over the window above the profile's ``figure`` x (1 + drift)."""
    title, sel = names
    limit = figure * (1 + drift)
    method = m.profile.get("energy_method", "method not recorded")
    run = f", run {m.profile['run_id']}" if "run_id" in m.profile else ""
    return {
        "alert": f"{title}LiveEnergyPerPredictionDrift",
        "expr": f"sum by ({PER_SERVER}) (rate(serving_live_energy_joules_total[{LIVE_WINDOW}])) "
        f"/ {_predictions_rate(sel)} > {_num(limit)}",
        "for": LIVE_FOR,
        "labels": {"severity": "ticket", "figure": "energy"},
        "annotations": {
            "summary": f"{m.name} on {{{{ $labels.instance }}}}: live "
            f'{{{{ $value | printf "%.4g" }}}} J/prediction, over the profile\'s {_num(figure)} '
            f"J x {1 + drift:g}",
            "description": f"Live J/prediction over {LIVE_WINDOW}: "
            f"rate(serving_live_energy_joules_total[{LIVE_WINDOW}]) summed over the server's "
            f"components / rate(serving_predictions_total[{LIVE_WINDOW}]); idle time counts. "
            "Method: measured where the server found RAPL or NVML counters, estimated from its "
            "process CPU time x TDP / logical cores otherwise; this server's meters: "
            f"{_METERS}Profile: {_num(figure)} J/prediction ({method}{run}); fires above "
            f"{_num(limit)} (+{drift:.0%}) for {LIVE_FOR}.",
        },
    }


def _cost_rule(
    m: Manifest, names: tuple[str, str], figures: tuple[float, float], drift: float
) -> dict[str, Any]:
    """Instance price / (3600 x predictions per second) x 1e6 above cost per 1M x (1 + drift)."""
    title, sel = names
    price, per_million = figures
    limit = per_million * (1 + drift)
    how = m.cost.method or "method not recorded"
    if m.cost.utilisation is not None:
        how += f", the profile's throughput at {m.cost.utilisation:.0%} utilisation"
    return {
        "alert": f"{title}LiveCostPer1MDrift",
        "expr": f"{_num(price)} / (3600 * {_predictions_rate(sel)}) * 1e6 > {_num(limit)}",
        "for": LIVE_FOR,
        "labels": {"severity": "ticket", "figure": "cost"},
        "annotations": {
            "summary": f"{m.name} on {{{{ $labels.instance }}}}: live "
            f'{{{{ $value | printf "%.4g" }}}} USD per 1M predictions, over the manifest\'s '
            f"{_num(per_million)} x {1 + drift:g}",
            "description": f"Live cost per 1M predictions over {LIVE_WINDOW}: the instance "
            f"price ({_num(price)} USD/h) / (3600 x rate(serving_predictions_total"
            f"[{LIVE_WINDOW}])) x 1e6, the machine's time shared by the predictions it served "
            f"(method: typed-in price x measured traffic). Manifest: {_num(per_million)} USD "
            f"per 1M ({how}); fires above {_num(limit)} (+{drift:.0%}) for {LIVE_FOR}: fewer "
            "predictions per replica than the cost was planned at (fewer or smaller replicas "
            "would do).",
        },
    }


def _budget_rules(m: Manifest, title: str, sel: str) -> list[dict[str, Any]]:
    """Replicas' hourly price, and traffic x cost per prediction, projected over the budget."""
    budget = m.cost.monthly_budget_usd
    rules = []
    if m.cost.instance_usd_per_h is not None:
        rules.append(
            {
                "alert": f"{title}ReplicaCostOverBudget",
                "expr": f"sum(serving_instance_usd_per_hour{{{sel}}}) * {HOURS_PER_MONTH:.1f} "
                f"> {budget:g}",
                "for": "30m",
                "labels": {"severity": "ticket"},
                "annotations": {
                    "summary": f"{m.name}: running replicas cost more than the "
                    f"{budget:g} USD monthly budget at this rate"
                },
            }
        )
    if m.cost.usd_per_million is not None:
        rules.append(
            {
                "alert": f"{title}PredictionCostOverBudget",
                "expr": f"sum(rate(serving_cost_usd_total{{{sel}}}[1h])) * 3600 * "
                f"{HOURS_PER_MONTH:.1f} > {budget:g}",
                "for": "1h",
                "labels": {"severity": "ticket"},
                "annotations": {
                    "summary": f"{m.name}: traffic x cost per prediction projects "
                    f"above the {budget:g} USD monthly budget"
                },
            }
        )
    return rules
