"""Reports and the deployment gate: compare repeated runs with baseline runs on cost per 1M
predictions and p99, on one host and with a bootstrap interval, write an HTML report with its
charts, and fail (``RegressionError``) on a regression noise does not explain.

The gate is in :mod:`workbench.report.gate`, its host check in :mod:`workbench.report.host`, its
interval in :mod:`workbench.report.interval`, the HTML report in :mod:`workbench.report.html`, the
charts of the other steps (latency, batching, Pareto) in :mod:`workbench.report.charts`.

Example
-------
>>> from workbench.report import Thresholds
>>> Thresholds().max_cost_increase_pct
10.0
"""

from workbench.report.gate import Gate, Pricing, Thresholds, compare_runs, with_extra_work
from workbench.report.host import HostCheck, host_fingerprint
from workbench.report.html import report_charts, runs_frame, write_html_report

__all__ = [
    "Gate",
    "HostCheck",
    "Pricing",
    "Thresholds",
    "compare_runs",
    "host_fingerprint",
    "report_charts",
    "runs_frame",
    "with_extra_work",
    "write_html_report",
]
