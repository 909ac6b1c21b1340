"""Load testing a live V2 endpoint: open-loop constant-rate traffic, capacity, soak and overload
(:mod:`~workbench.load.generator`).

Example
-------
>>> from workbench.load import constant_rate
>>> len(constant_rate(10.0, 1.0))
10
"""

from workbench.load.generator import (
    Capacity,
    LoadResult,
    LoadSummary,
    OverloadResult,
    SoakResult,
    constant_rate,
    measure_capacity,
    open_loop,
    overload,
    soak,
)

__all__ = [
    "Capacity",
    "LoadResult",
    "LoadSummary",
    "OverloadResult",
    "SoakResult",
    "constant_rate",
    "measure_capacity",
    "open_loop",
    "overload",
    "soak",
]
