"""How a figure was obtained, and how labels combine.

Every figure the workbench shows carries one of :data:`METHODS`: ``measured`` (a counter, a clock,
a sensor), ``typed in`` (a user's figure, e.g. a price or a training energy) or ``estimated`` (a
model of the hardware, e.g. TDP x utilisation). A figure computed from several is only as good as
the weakest of them.

>>> from workbench.provenance import MEASURED, weakest_method
>>> weakest_method(MEASURED, "typed in")
'typed in'
"""

from __future__ import annotations

MEASURED = "measured"
ESTIMATED = "estimated"
TYPED_IN = "typed in"
METHODS = (MEASURED, ESTIMATED, TYPED_IN)
# Weakest first: a result is only as good as the least trustworthy figure behind it.
_METHOD_RANK = {ESTIMATED: 0, TYPED_IN: 1, MEASURED: 2}


def weakest_method(*methods: str) -> str:
    """The least trustworthy of ``methods`` (estimated < typed in < measured).

    >>> weakest_method("measured", "estimated")
    'estimated'
    """
    return min(methods, key=_METHOD_RANK.__getitem__)
