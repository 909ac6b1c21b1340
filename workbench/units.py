"""Unit constants, defined once: every module that converts joules, hours or memory power imports
them from here.

>>> from workbench.units import J_PER_KWH, HOURS_PER_MONTH
>>> 3.6e6 / J_PER_KWH, round(HOURS_PER_MONTH, 2)
(1.0, 730.5)
"""

from __future__ import annotations

J_PER_WH = 3600.0
J_PER_KWH = 3.6e6
SECONDS_PER_DAY = 86_400.0
#: A mean month (365.25 / 12 days), as cloud price sheets count it.
DAYS_PER_MONTH = 365.25 / 12
HOURS_PER_MONTH = DAYS_PER_MONTH * 24
#: Memory power per GB, Green Algorithms' figure (Lannelongue et al. 2021); the estimate meter
#: charges it per GB resident and the lifecycle model per GB provisioned.
DRAM_W_PER_GB = 0.3725
