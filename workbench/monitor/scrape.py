"""Read a live runtime's ``/metrics``: the Prometheus text exposition (0.0.4) parsed into samples.

:func:`parse` turns exposition text into a :class:`Scrape` (every sample with its labels, and the
time it was taken); :func:`fetch` gets one from a URL (``http://host:port``, ``host:port`` or a
full ``.../metrics`` address), with an optional bearer token. Nothing here needs
``prometheus_client``: the format is a line per sample, ``name{label="value",...} number``.

>>> s = parse('# TYPE serving_predictions_total counter\\n'
...           'serving_predictions_total{model="digits"} 42\\n'
...           'serving_request_seconds_bucket{model="digits",le="+Inf"} 40\\n', at=100.0)
>>> s.total("serving_predictions_total", model="digits"), s.at
(42.0, 100.0)
>>> s.labels("serving_request_seconds_bucket", "le")
['+Inf']
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from workbench.errors import ConfigError

#: What a scrape sends and how long it waits for an answer.
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Sample:
    """One exposition line: series name, its labels and its value."""

    name: str
    labels: dict[str, str]
    value: float

    def matches(self, name: str, labels: dict[str, str]) -> bool:
        return self.name == name and all(self.labels.get(k) == v for k, v in labels.items())


@dataclass(frozen=True)
class Scrape:
    """Every sample of one ``/metrics`` answer and when it was read (``at``: seconds on a
    monotonic clock; ``wall``: Unix time)."""

    samples: tuple[Sample, ...]
    at: float
    wall: float = field(default_factory=time.time)

    def select(self, name: str, **labels: str) -> list[Sample]:
        """The samples of series ``name`` whose labels include ``labels``."""
        return [s for s in self.samples if s.matches(name, labels)]

    def total(self, name: str, **labels: str) -> float:
        """Sum of the matching samples (NaN ones left out); NaN when none matches."""
        values = [s.value for s in self.select(name, **labels) if not math.isnan(s.value)]
        return float(sum(values)) if values else math.nan

    def has(self, name: str, **labels: str) -> bool:
        return bool(self.select(name, **labels))

    def labels(self, name: str, label: str, **labels: str) -> list[str]:
        """The distinct values of ``label`` among the matching samples, in order of appearance."""
        seen: dict[str, None] = {}
        for s in self.select(name, **labels):
            if label in s.labels:
                seen[s.labels[label]] = None
        return list(seen)


def parse(text: str, at: float | None = None, wall: float | None = None) -> Scrape:
    """Exposition text -> :class:`Scrape`; a line that is not a sample is a ``ConfigError``
    naming its number."""
    samples = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            samples.append(_sample(line))
        except (ValueError, IndexError) as exc:
            raise ConfigError(
                f"line {number} of the metrics is not a Prometheus sample ({line[:80]!r}: "
                f"{exc}); point the monitor at a runtime's /metrics"
            ) from None
    return Scrape(
        tuple(samples),
        time.monotonic() if at is None else float(at),
        time.time() if wall is None else float(wall),
    )


def _sample(line: str) -> Sample:
    """``name{a="x",b="y"} value [timestamp]`` -> Sample."""
    brace = line.find("{")
    space = line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        name = line[:brace]
        labels, rest = _labels(line, brace + 1)
    else:
        name, _, rest = line.partition(" ")
        labels = {}
    fields = rest.split()
    if not name or not fields:
        raise ValueError("no value")
    return Sample(name, labels, _number(fields[0]))


def _labels(line: str, i: int) -> tuple[dict[str, str], str]:
    """The labels from position ``i`` (just after ``{``) to the closing brace, and the rest."""
    labels: dict[str, str] = {}
    while True:
        while line[i] in " ,":
            i += 1
        if line[i] == "}":
            return labels, line[i + 1 :]
        eq = line.index("=", i)
        key = line[i:eq].strip()
        if line[eq + 1] != '"':
            raise ValueError(f"label {key!r} has no quoted value")
        i, chars = eq + 2, []
        while line[i] != '"':
            if line[i] == "\\":
                i += 1
                chars.append({"n": "\n", "\\": "\\", '"': '"'}.get(line[i], "\\" + line[i]))
            else:
                chars.append(line[i])
            i += 1
        labels[key] = "".join(chars)
        i += 1


def _number(text: str) -> float:
    return {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}.get(text) or float(text)


def metrics_url(url: str) -> str:
    """``host:port`` or ``http://host:port`` -> ``http://host:port/metrics``; a full path is kept.

    >>> metrics_url("127.0.0.1:8080"), metrics_url("https://m.example/x/metrics")
    ('http://127.0.0.1:8080/metrics', 'https://m.example/x/metrics')
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"URL {url!r} is not an http(s) address; give the runtime's address, e.g. "
            "http://127.0.0.1:8080"
        )
    path = parts.path if parts.path not in ("", "/") else "/metrics"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def fetch(url: str, token: str | None = None, timeout_s: float = TIMEOUT_S) -> Scrape:
    """One scrape of a live runtime; an unreachable URL, a refused token or an answer that is not
    Prometheus text is a ``ConfigError`` naming the fix."""
    target = metrics_url(url)
    request = urllib.request.Request(target, headers={"Accept": "text/plain"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            body = answer.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        fix = (
            "pass the runtime's bearer token with --token"
            if exc.code in (401, 403)
            else ("check that the URL is a runtime's /metrics")
        )
        raise ConfigError(f"{target} answered HTTP {exc.code}; {fix}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(
            f"cannot read {target} ({reason}); start the runtime (python -m serving BUNDLE) or "
            "fix the URL"
        ) from None
    return parse(body)
