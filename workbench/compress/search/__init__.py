"""The compression search: build variants, measure quality and speed, keep the Pareto frontier,
and recommend the one to ship under the user's constraints (``optimize``).

Example
-------
>>> from workbench.compress.search import Constraints
>>> Constraints(max_quality_drop=0.01).max_quality_drop
0.01
"""

from workbench.compress.search.runner import (
    Candidate,
    Constraints,
    Recommendation,
    SearchResult,
    optimize,
    pareto_frontier,
    recommend,
)

__all__ = [
    "Candidate",
    "Constraints",
    "Recommendation",
    "SearchResult",
    "optimize",
    "pareto_frontier",
    "recommend",
]
