"""The bundle's Prometheus alert rules (``deploy/prometheus/alerts.yaml``): p99 latency over the
SLO, projected monthly cost over the budget, and requests refused as overloaded.

The rules read the series the runtime exports (:mod:`serving.metrics`), filtered on the served
model's name; load the file as a Prometheus rule file.

Example
-------
>>> from serving.manifest import Manifest, Slo
>>> rules = alert_rules(Manifest(name="digits-mlp", models=(), slo=Slo(p99_ms=20)))
>>> [rule["alert"] for rule in rules["groups"][0]["rules"]]
['DigitsMlpP99OverSLO', 'DigitsMlpOverloaded']
"""

from __future__ import annotations

from typing import Any

from serving.manifest import Manifest
from workbench.units import HOURS_PER_MONTH


def alert_rules(m: Manifest) -> dict[str, Any]:
    """Prometheus rules: p99 over the SLO, projected monthly cost over the budget, overload."""
    sel = f'model="{m.name}"'
    title = "".join(part.capitalize() for part in m.name.replace("_", "-").split("-"))
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
