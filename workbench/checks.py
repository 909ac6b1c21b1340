"""Argument checks shared by the whole workbench: each raises :class:`~workbench.errors.ConfigError`
with a message that names the bad value, the rule it breaks and, given ``fix=``, how to mend it.

Five checkers cover every setting: :func:`number` (a finite real number, optionally bounded),
:func:`whole` (an integer, optionally bounded), :func:`fraction` (a number in [0, 1], either end
open), :func:`one_of` (a value from a fixed set) and :func:`duration` (``"20ms"``, ``"2m"`` or a
bare number in the caller's unit). The first three return the value as ``float``
or ``int``, so a caller can check and convert in one step.

A plain argument is named as ``name=value``; a field of a settings object (a scenario's
``inference`` section, a bundle's ``scaling``) passes ``owner=`` and is named ``owner.name``, with
the value after the rule, as such fields are written in the files they are read from.

>>> number("rate_per_s", 0, minimum=0, open_low=True, fix="give requests per second")
Traceback (most recent call last):
...
workbench.errors.ConfigError: rate_per_s=0 must be > 0; give requests per second
>>> fraction("usage", 1.5, owner="training", open_low=True, fix="0.6 = 60 %")
Traceback (most recent call last):
...
workbench.errors.ConfigError: training.usage must be a fraction in (0, 1], got 1.5; 0.6 = 60 %
>>> whole("batch_size", 4, minimum=1)
4
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, NoReturn

import numpy as np

from workbench.errors import ConfigError

_REAL = (int, float, np.integer, np.floating)
#: Microseconds per unit a duration may be written in (whole numbers, so ratios stay exact).
MICROSECONDS_PER = {
    "us": 1,
    "µs": 1,
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "h": 3_600_000_000,
}
_DURATION = re.compile(r"([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)([a-zµ]*)")
_INTEGER = (int, np.integer)


def number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    open_low: bool = False,
    open_high: bool = False,
    owner: str | None = None,
    fix: str | None = None,
) -> float:
    """``value`` as a float if it is a finite real number within the bounds given, else raise.

    ``open_low`` / ``open_high`` exclude the bound itself (``minimum=0, open_low=True``: > 0).

    >>> number("pue", 1.2, minimum=1)
    1.2
    >>> number("pue", float("nan"), owner="grid")
    Traceback (most recent call last):
    ...
    workbench.errors.ConfigError: grid.pue must be a finite number, got nan
    """
    rule = _bounds(minimum, maximum, open_low, open_high)
    if not _real(value):
        _fail(name, value, f"a number {rule}".rstrip(), owner, fix)
    if not math.isfinite(value):
        _fail(name, value, f"a finite number {rule}".rstrip(), owner, fix)
    if not _within(value, minimum, maximum, open_low, open_high):
        _fail(name, value, rule, owner, fix)
    return float(value)


def whole(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    owner: str | None = None,
    fix: str | None = None,
) -> int:
    """``value`` as an int if it is an integer (not a bool, not a float) within the bounds.

    >>> whole("instances", 0, minimum=1, fix="use 1 or more")
    Traceback (most recent call last):
    ...
    workbench.errors.ConfigError: instances=0 must be a whole number >= 1; use 1 or more
    """
    ok = not isinstance(value, bool) and isinstance(value, _INTEGER)
    if not ok or not _within(value, minimum, maximum, False, False):
        rule = _bounds(minimum, maximum, False, False)
        _fail(name, value, f"a whole number {rule}".rstrip(), owner, fix)
    return int(value)


def fraction(
    name: str,
    value: Any,
    *,
    open_low: bool = False,
    open_high: bool = False,
    owner: str | None = None,
    fix: str | None = None,
) -> float:
    """``value`` as a float if it is a number in [0, 1] (an end excluded if open)."""
    ok = _real(value) and math.isfinite(value) and _within(value, 0, 1, open_low, open_high)
    if not ok:
        _fail(name, value, "a fraction " + _bounds(0, 1, open_low, open_high), owner, fix)
    return float(value)


def one_of(
    name: str,
    value: Any,
    choices: Iterable[Any],
    *,
    owner: str | None = None,
    fix: str | None = None,
) -> Any:
    """``value`` itself if it is one of ``choices``, else raise listing them.

    >>> one_of("kind", "tpu", ("cpu", "gpu"))
    Traceback (most recent call last):
    ...
    workbench.errors.ConfigError: kind='tpu' must be one of 'cpu', 'gpu'
    """
    choices = tuple(choices)
    if value not in choices:
        _fail(name, value, "one of " + ", ".join(repr(c) for c in choices), owner, fix)
    return value


def duration(
    name: str, value: Any, *, unit: str, units: Iterable[str], fix: str | None = None
) -> float:
    """``value`` in ``unit`` (> 0, finite): a bare number is already in ``unit``; text may carry
    one of ``units`` (see :data:`MICROSECONDS_PER`), spaces and case ignored.

    >>> duration("interval", "2m", unit="s", units=("s", "m", "h"))
    120.0
    >>> duration("slo_p99", "0.5 s", unit="ms", units=("us", "ms", "s"))
    500.0
    >>> duration("interval", "soon", unit="s", units=("s",), fix="e.g. 10s")
    Traceback (most recent call last):
    ...
    workbench.errors.ConfigError: interval='soon' is not a duration; e.g. 10s
    """
    if _real(value):
        amount = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        match = _DURATION.fullmatch(text)
        written = match.group(2) if match else None
        if written is None or (written and written not in set(units)):
            amount = math.nan
        else:
            scale = MICROSECONDS_PER[written or unit]
            amount = float(match.group(1)) * scale / MICROSECONDS_PER[unit]
    if not (amount > 0 and math.isfinite(amount)):
        raise ConfigError(f"{name}={value!r} is not a duration" + (f"; {fix}" if fix else ""))
    return amount


def _real(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, _REAL)


def _within(
    value: float, minimum: float | None, maximum: float | None, open_low: bool, open_high: bool
) -> bool:
    if minimum is not None and (value <= minimum if open_low else value < minimum):
        return False
    return maximum is None or (value < maximum if open_high else value <= maximum)


def _bounds(minimum: float | None, maximum: float | None, open_low: bool, open_high: bool) -> str:
    """The rule in words: ``> 0``, ``<= 1``, ``in (0, 1]``; empty without bounds."""
    if minimum is not None and maximum is not None:
        return f"in {'(' if open_low else '['}{minimum:g}, {maximum:g}{')' if open_high else ']'}"
    if minimum is not None:
        return f"{'>' if open_low else '>='} {minimum:g}"
    if maximum is not None:
        return f"{'<' if open_high else '<='} {maximum:g}"
    return ""


def _shown(value: Any) -> str:
    """``repr`` of the value, numpy scalars shown as the plain Python number they hold."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _fail(name: str, value: Any, rule: str, owner: str | None, fix: str | None) -> NoReturn:
    if owner is None:
        message = f"{name}={_shown(value)} must be {rule}"
    else:
        message = f"{owner}.{name} must be {rule}, got {_shown(value)}"
    raise ConfigError(f"{message}; {fix}" if fix else message)
