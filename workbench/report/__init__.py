"""Reports and the deployment gate: compare a run with a baseline on cost per 1M predictions and
p99, write an HTML report with its charts, and fail (``RegressionError``) on a regression.

The gate is in :mod:`workbench.report.gate`, the HTML report in :mod:`workbench.report.html`, the
charts of the other steps (latency, batching, Pareto) in :mod:`workbench.report.charts`.

Example
-------
>>> from workbench.report import Thresholds
>>> Thresholds().max_cost_increase_pct
10.0
"""

from workbench.report.gate import Gate, Pricing, Thresholds, compare_runs, with_extra_work
from workbench.report.html import report_charts, runs_frame, write_html_report

__all__ = [
    "Gate",
    "Pricing",
    "Thresholds",
    "compare_runs",
    "report_charts",
    "runs_frame",
    "with_extra_work",
    "write_html_report",
]
