"""``FallbackMeter``: a measuring meter with the estimate behind it, so a failure inside a window
gives the estimate for that window (with a warning) instead of an exception.

>>> from workbench.energy import EstimateMeter, FallbackMeter
>>> FallbackMeter(EstimateMeter(tdp_w=5.0)).name
'estimate'
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import replace

from workbench.energy.base import EnergyFallbackWarning, EnergyReading, Meter
from workbench.energy.estimate import EstimateMeter


class FallbackMeter(Meter):
    """A meter that never fails mid-window: if ``primary`` raises, the ``fallback`` estimate for
    the same window is returned, with a warning (``EnergyFallbackWarning`` and in the reading).

    The fallback (an ``EstimateMeter`` unless given) runs alongside every window. Misuse of
    windows (ended twice, never begun) still raises ``EnergyError``. An estimate covers CPU and
    RAM only: if the primary measured a GPU, that GPU's energy is missing from a fallback
    reading, and its warning says so.
    """

    def __init__(self, primary: Meter, fallback: Meter | None = None) -> None:
        super().__init__()
        self.primary = primary
        if fallback is None:
            fallback = EstimateMeter()
        self.fallback = fallback
        self.name = primary.name

    def components(self) -> list[str]:
        return self.primary.components()

    def _failed(self, name: str, stage: str, exc: BaseException) -> str:
        message = (
            f"the {self.primary.name} energy meter failed {stage} window {name!r} "
            f"({type(exc).__name__}: {exc}); this window's energy is the {self.fallback.name} "
            "meter's instead"
        )
        covered = set(self.fallback.components())
        lost = [c for c in self.primary.components() if c.startswith("gpu") and c not in covered]
        if lost:
            message += f", which does not include {', '.join(lost)}"
        warnings.warn(message, EnergyFallbackWarning, stacklevel=4)
        return message

    def _begin(self, name: str) -> str | None:
        self.fallback.begin_window(name)
        try:
            self.primary.begin_window(name)
        except Exception as exc:
            return self._failed(name, "at the start of", exc)
        return None

    def _end(self, name: str, failure: str | None, duration_s: float) -> EnergyReading:
        if failure is None:
            try:
                reading = self.primary.end_window(name)
            except Exception as exc:
                failure = self._failed(name, "during", exc)
            else:
                with contextlib.suppress(Exception):
                    self.fallback.end_window(name)
                return reading
        backup = self.fallback.end_window(name)
        return replace(
            backup,
            meter=f"{self.fallback.name} (fallback for {self.primary.name})",
            warnings=[*backup.warnings, failure],
        )

    def close(self) -> None:
        self.primary.close()
        self.fallback.close()
