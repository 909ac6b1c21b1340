"""Reports and the deployment gate: compare a run with a baseline on cost per 1M predictions and
p99, write an HTML report with its charts, and fail (``RegressionError``) on a regression.

Example
-------
>>> from workbench.report import Thresholds
>>> Thresholds().max_cost_increase_pct
10.0
"""

from workbench.report.gate import Gate, Pricing, Thresholds, compare_runs, write_html_report

__all__ = ["Gate", "Pricing", "Thresholds", "compare_runs", "write_html_report"]
