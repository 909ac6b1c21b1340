"""RAPL: CPU package and DRAM energy counters under ``/sys/class/powercap`` (Intel and AMD).

Measured, whole socket (every process on the machine counts). Part of ``workbench.energy.base``;
import it from there.

Reading the counters needs permission: since Linux 5.10 ``energy_uj`` is readable by root only.
Run as root, or ``sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj
/sys/class/powercap/intel-rapl:*:*/energy_uj`` (until reboot).

Example
-------
>>> from workbench.energy import RaplMeter
>>> meter = RaplMeter()  # doctest: +SKIP
>>> with meter.window("predict") as w:  # doctest: +SKIP
...     run_batch()
>>> w.reading.energy_j_by_component  # doctest: +SKIP
{'cpu_package:0': 41.2, 'dram:0': 5.3}
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from workbench.energy.base import EnergyReading, Meter
from workbench.errors import BackendUnavailableError, EnergyError
from workbench.provenance import MEASURED

RAPL_ROOT = "/sys/class/powercap"

_RAPL_ZONE = re.compile(r"(?:intel|amd)-rapl:(\d+)(?::(\d+))?")
_RAPL_MAX_PLAUSIBLE_W = 500.0  # per domain: above this a window could hide a second wrap-around


def _read_sysfs(path: Path) -> str:
    return path.read_text()


@dataclass(frozen=True)
class RaplZone:
    """One summed RAPL domain: its component name, counter file and counter range."""

    component: str
    energy_path: Path
    max_energy_range_uj: int


class RaplMeter(Meter):
    """CPU package and DRAM energy from the RAPL counters under ``/sys/class/powercap``.

    Zones named ``intel-rapl:N`` / ``intel-rapl:N:M`` (AMD CPUs appear under the same driver,
    or as ``amd-rapl:N``) with a ``name`` file: ``package-N`` becomes ``cpu_package:N`` and
    ``dram`` becomes ``dram:N``. ``core`` and ``uncore`` lie inside the package and ``psys`` is
    the whole platform, so they are not summed. A counter that passed ``max_energy_range_uj``
    and restarted from zero is unwrapped once per window; windows long enough for two wraps
    (range / 500 W, usually over ten minutes) carry a warning.

    Parameters
    ----------
    root : the powercap directory.
    read_text : reads one file (``Path -> str``); the default reads sysfs.

    Raises
    ------
    BackendUnavailableError : no RAPL zones (a VM or container without powercap).
    EnergyError : a counter exists but cannot be read; the message gives the fix.

    Example
    -------
    >>> meter = RaplMeter()  # doctest: +SKIP
    """

    name = "rapl"

    def __init__(
        self, root: str | Path = RAPL_ROOT, *, read_text: Callable[[Path], str] | None = None
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self._read_text = read_text or _read_sysfs
        self.skipped: list[str] = []
        self.zones = self._discover()
        self._read_counters()

    def _read(self, path: Path) -> str:
        try:
            return self._read_text(path)
        except PermissionError as exc:
            raise EnergyError(
                f"cannot read the RAPL counter {path}: permission denied. Since Linux 5.10 "
                "energy_uj is readable by root only. Fix: run as root, or grant read access "
                f"with `sudo chmod o+r {self.root}/intel-rapl:*/energy_uj "
                f"{self.root}/intel-rapl:*:*/energy_uj` (until reboot; a udev rule makes it "
                "last), or use EstimateMeter / auto_meter() for an estimate"
            ) from exc
        except OSError as exc:
            raise EnergyError(
                f"cannot read the RAPL file {path} ({exc.strerror or exc}); check that the "
                "powercap driver is loaded (`sudo modprobe intel_rapl_msr`), or use "
                "EstimateMeter / auto_meter() for an estimate"
            ) from exc

    def _read_int(self, path: Path) -> int:
        text = self._read(path).strip()
        try:
            return int(text)
        except ValueError:
            raise EnergyError(
                f"the RAPL file {path} holds {text!r}, not a counter in microjoules; "
                f"point RaplMeter(root=...) at the powercap directory (default {RAPL_ROOT})"
            ) from None

    def _discover(self) -> list[RaplZone]:
        if not self.root.is_dir():
            raise BackendUnavailableError(
                f"no RAPL energy counters: {self.root} does not exist (usual on VMs and in "
                "containers); use EstimateMeter, or auto_meter() which falls back to it"
            )
        zones: list[RaplZone] = []
        for path in sorted(self.root.iterdir()):
            match = _RAPL_ZONE.fullmatch(path.name)
            if not match:
                continue
            kind = self._read(path / "name").strip()
            socket = match.group(1)
            if kind.startswith("package"):
                component = f"cpu_package:{socket}"
            elif kind == "dram":
                component = f"dram:{socket}"
            else:
                self.skipped.append(f"{path.name} ({kind})")
                continue
            if any(z.component == component for z in zones):
                self.skipped.append(f"{path.name} ({kind}, duplicate of {component})")
                continue
            zones.append(
                RaplZone(
                    component,
                    path / "energy_uj",
                    self._read_int(path / "max_energy_range_uj"),
                )
            )
        if not zones:
            raise BackendUnavailableError(
                f"no RAPL package or DRAM zones under {self.root} (no intel-rapl:* or amd-rapl:* "
                "directory); use EstimateMeter, or auto_meter() which falls back to it"
            )
        return zones

    def _read_counters(self) -> dict[str, int]:
        return {z.component: self._read_int(z.energy_path) for z in self.zones}

    def components(self) -> list[str]:
        return [z.component for z in self.zones]

    def _begin(self, name: str) -> dict[str, int]:
        return self._read_counters()

    def _end(self, name: str, token: dict[str, int], duration_s: float) -> EnergyReading:
        end = self._read_counters()
        energy: dict[str, float] = {}
        warn: list[str] = []
        for zone in self.zones:
            start, stop = token[zone.component], end[zone.component]
            delta_uj = stop - start if stop >= start else stop + zone.max_energy_range_uj - start
            energy[zone.component] = delta_uj / 1e6
            if duration_s > zone.max_energy_range_uj / 1e6 / _RAPL_MAX_PLAUSIBLE_W:
                warn.append(
                    f"{zone.component}: the window ({duration_s:.0f} s) is long enough for the "
                    "counter to wrap more than once, which cannot be detected; measure shorter "
                    "windows and add them up"
                )
        notes = ["RAPL counters: whole socket, every process on the machine counts"]
        if not any(z.component.startswith("dram") for z in self.zones):
            notes.append("RAPL has no DRAM domain here: memory energy is not included")
        if self.skipped:
            notes.append(f"RAPL zones not summed: {', '.join(self.skipped)}")
        return EnergyReading.from_components(
            duration_s, energy, dict.fromkeys(energy, MEASURED), self.name, warn, notes
        )
