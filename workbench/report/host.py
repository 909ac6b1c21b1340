"""Which machine a run was timed on: a short host fingerprint, so the gate compares like with like.

A latency or throughput figure only means something next to the machine that produced it: the
same model is twice as fast on another CPU. Every stored run keeps its environment
(:func:`workbench.measure.environment.environment`); :func:`host_fingerprint` hashes the part of
it that decides timings: the CPU model, logical cores, total memory, the GPU and the operating
system with its architecture (the kernel and libc versions are left out: a security update does
not make a machine another machine). The host name is not used: a renamed machine is the same
machine, and two cloud instances of one type are alike whatever their names.

:func:`compare_hosts` is the gate's check: the same fingerprint on every run passes; another one
raises :class:`~workbench.errors.ConfigError` naming both fingerprints and the fix, unless
``allow_other_host=True``, which passes with a loud warning (:attr:`HostCheck.warning`).

Example
-------
>>> env = {"cpu_model": "Intel(R) Xeon(R) CPU @ 2.20GHz", "logical_cores": 2,
...        "memory_gb": 7.8, "gpu": None, "os": "Linux-6.1.0-13-amd64-x86_64-with-glibc2.36"}
>>> later = {**env, "os": "Linux-6.1.0-15-amd64-x86_64-with-glibc2.36", "python": "3.12.1"}
>>> host_fingerprint(env) == host_fingerprint(later)  # a kernel update: the same host
True
>>> host_fingerprint(env) == host_fingerprint({**env, "logical_cores": 8})
False
>>> describe_host(env)
'Intel(R) Xeon(R) CPU @ 2.20GHz, 2 logical cores, 7.8 GB, no GPU, Linux x86_64'
>>> host_fingerprint({})
'unknown'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workbench.errors import ConfigError

#: Environment fields that decide whether two runs' timings are comparable (``os`` is reduced
#: to its family and architecture by :func:`host_identity`).
HOST_FIELDS = ("cpu_model", "logical_cores", "memory_gb", "gpu", "os")
#: The fingerprint of a run whose environment was not recorded.
UNKNOWN = "unknown"
_ARCHES = ("x86_64", "amd64", "aarch64", "arm64", "armv7l", "i686", "ppc64le", "s390x", "riscv64")


def _os_family(platform_string: str | None) -> str | None:
    """``Linux-6.1.0-13-amd64-x86_64-with-glibc2.36`` -> ``Linux x86_64`` (no kernel version)."""
    if not platform_string:
        return None
    parts = str(platform_string).split("-")
    lowered = [p.lower() for p in parts[1:]]
    # The last architecture token wins: a Debian kernel is named "...-amd64" before the machine.
    arch = next((p for p in reversed(lowered) if p in _ARCHES), "")
    return f"{parts[0]} {arch}".strip()


def host_identity(env: dict[str, Any] | None) -> dict[str, Any]:
    """The fields of ``env`` that :func:`host_fingerprint` hashes (``None`` where missing)."""
    env = env or {}
    identity = {key: env.get(key) for key in HOST_FIELDS}
    identity["os"] = _os_family(env.get("os"))
    return identity


def host_fingerprint(env: dict[str, Any] | None) -> str:
    """12 hex digits naming the machine of a run's environment; ``"unknown"`` if none is stored."""
    identity = host_identity(env)
    if all(value is None for value in identity.values()):
        return UNKNOWN
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def describe_host(env: dict[str, Any] | None) -> str:
    """One line for a person: CPU, cores, memory, GPU, OS (``"not recorded"`` if unknown)."""
    identity = host_identity(env)
    if host_fingerprint(env) == UNKNOWN:
        return "not recorded"
    parts = [
        identity["cpu_model"] or "CPU not recorded",
        f"{identity['logical_cores']} logical cores",
        f"{identity['memory_gb']:g} GB" if identity["memory_gb"] is not None else "memory ?",
        identity["gpu"] or "no GPU",
        identity["os"] or "OS not recorded",
    ]
    return ", ".join(str(p) for p in parts)


@dataclass(frozen=True)
class HostCheck:
    """The host of each side of a comparison, and whether another host was allowed."""

    baseline_fingerprint: str
    candidate_fingerprint: str
    baseline_host: str
    candidate_host: str
    other_host_allowed: bool = False

    @property
    def same_host(self) -> bool:
        """Both sides carry one known fingerprint."""
        return self.baseline_fingerprint == self.candidate_fingerprint != UNKNOWN

    @property
    def warning(self) -> str | None:
        """The loud warning of a comparison allowed across hosts; ``None`` on one host."""
        if self.same_host:
            return None
        return (
            f"WARNING: baseline and candidate ran on different hosts (baseline "
            f"{self.baseline_fingerprint}: {self.baseline_host}; candidate "
            f"{self.candidate_fingerprint}: {self.candidate_host}); the timings are not "
            "comparable and the verdict may reflect the machines, not the model"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline_fingerprint": self.baseline_fingerprint,
            "candidate_fingerprint": self.candidate_fingerprint,
            "baseline_host": self.baseline_host,
            "candidate_host": self.candidate_host,
            "same_host": self.same_host,
            "other_host_allowed": self.other_host_allowed,
            "warning": self.warning,
        }


def _side_fingerprint(side: str, envs: Sequence[tuple[int, dict[str, Any]]]) -> tuple[str, str]:
    """The one fingerprint of a side's runs, and its description; mixed hosts are refused."""
    prints = {run_id: host_fingerprint(env) for run_id, env in envs}
    if len(set(prints.values())) > 1:
        listed = ", ".join(f"run {rid}: {fp}" for rid, fp in prints.items())
        raise ConfigError(
            f"the {side} runs were timed on different hosts ({listed}); give {side} runs from "
            "one machine (`workbench runs` lists them with their environment)"
        )
    return next(iter(prints.values())), describe_host(envs[0][1])


def compare_hosts(
    baseline: Sequence[tuple[int, dict[str, Any]]],
    candidate: Sequence[tuple[int, dict[str, Any]]],
    *,
    allow_other_host: bool = False,
) -> HostCheck:
    """Check that every run (``(run_id, environment)`` pairs) was timed on one host.

    Raises :class:`~workbench.errors.ConfigError` naming both fingerprints and the fix when the
    baseline and the candidate ran on different (or unrecorded) hosts, unless
    ``allow_other_host``; then :attr:`HostCheck.warning` says so, loudly.
    """
    base_fp, base_host = _side_fingerprint("baseline", baseline)
    cand_fp, cand_host = _side_fingerprint("candidate", candidate)
    check = HostCheck(base_fp, cand_fp, base_host, cand_host, bool(allow_other_host))
    if not check.same_host and not allow_other_host:
        raise ConfigError(
            f"the baseline ran on host {base_fp} ({base_host}) and the candidate on host "
            f"{cand_fp} ({cand_host}); timings from different machines are not comparable. "
            "Re-run the baseline on this host (profile the baseline model here and pass that run "
            "id), or accept the comparison with allow_other_host=True (`workbench report "
            "--allow-other-host`), which marks the report with a warning"
        )
    return check
