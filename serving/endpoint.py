"""One served model (one bundle): its signature, sessions, batcher(s), cache and cascade.

The app finds an :class:`Endpoint` by model name and calls :meth:`Endpoint.infer`; everything
between decoded inputs and outputs happens here: the cache look-up, the batcher (or the cascade
of two batchers), and the per-prediction metrics (rows, energy and cost from the bundle's
profile).

Energy and cost follow what ran: a cache hit counts as a prediction but adds no model energy or
model-time cost; a cascade charges every row the small model's figures and each escalated row the
large model's too (:func:`route_charges`). Every figure is labelled ``method="profile"`` (or
``typed in``), with how the profile made it in ``profile_method``: these series measure nothing
(the live meter, :mod:`serving.live_energy`, does).

Example
-------
>>> endpoint = Endpoint(load_bundle("out/digits-cnn"), ServingMetrics())   # doctest: +SKIP
>>> await endpoint.start()                                                   # doctest: +SKIP
>>> from serving.manifest import Manifest, ModelFile
>>> one = Manifest("m", (ModelFile("m", "m.onnx"),), profile={"energy_j_per_item": 0.5,
...                                                            "energy_method": "measured"})
>>> route_charges(one)
([Charge(kind='energy', role='main', value=0.5, method='profile', profile_method='measured')], [])
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from serving.batcher import Batcher, BatchTooLarge, Overloaded
from serving.cache import ResponseCache
from serving.manifest import Bundle, BundleError, Manifest
from serving.metrics import ServingMetrics
from serving.models import ModelError, OnnxModel
from serving.protocol import InferRequest, ProtocolError, Signature
from serving.router import CascadeRouter

PLATFORM = "onnxruntime_onnx"
log = logging.getLogger("serving")


@dataclass(frozen=True)
class Charge:
    """What each row one model runs adds to a total: ``value`` joules (``kind="energy"``) or
    dollars (``"cost"``) per row; ``role`` is the model (``cascade``: every answered row of a
    cascade); ``method`` is how the runtime got the figure (``profile``, ``typed in``) and
    ``profile_method`` how that figure was made (``measured``, ``estimated``, ...)."""

    kind: str
    role: str
    value: float
    method: str
    profile_method: str


class Endpoint:
    """A bundle made servable: load its sessions now, warm them up in :meth:`start`."""

    def __init__(self, bundle: Bundle, metrics: ServingMetrics) -> None:
        m = bundle.manifest
        self.bundle, self.manifest, self.metrics = bundle, m, metrics
        self.name, self.version = m.name, m.version
        self.label = (m.name,)
        self.ready = False
        try:
            models = {
                f.role: OnnxModel(
                    bundle.file(f.file),
                    name=f"{m.name}:{f.role}",
                    threads=m.threads.threads,
                    inter_op=m.threads.inter_op,
                    instances=m.threads.instances,
                    spinning=m.threads.spinning,
                    typical_shapes={t.name: t.typical_shape for t in f.inputs if t.typical_shape},
                )
                for f in m.models
            }
        except ModelError as exc:
            raise BundleError(
                f"{exc}; re-export the bundle from a model ONNX Runtime loads"
            ) from exc
        self.batchers = {
            role: Batcher(
                model,
                enabled=m.batching.enabled,
                max_batch_rows=m.batching.max_batch_rows,
                max_delay_s=m.batching.max_delay_ms / 1000,
                max_queue_rows=m.batching.max_queue_rows,
                queue_target_s=m.batching.queue_target_ms / 1000,
                queue_interval_s=m.batching.queue_interval_ms / 1000,
                metrics=metrics,
                label=m.name if role in ("main", "small") else f"{m.name}:{role}",
                inline_below_s=m.threads.inline_below_ms / 1000,
            )
            for role, model in models.items()
        }
        self.front = self.batchers["main" if m.cascade is None else "small"]
        front_model = self.front.model
        self.signature = Signature(front_model.inputs, front_model.outputs, name=m.name)
        self._check_manifest_signature()
        self.router = None
        if m.cascade is not None:
            try:
                self.router = CascadeRouter(
                    self.batchers["small"], self.batchers["large"], m.cascade
                )
            except ValueError as exc:
                raise BundleError(f"{bundle.path}: {exc}") from exc
        self.cache = ResponseCache(m.cache.max_entries, m.cache.ttl_s) if m.cache.enabled else None
        self._charges, unknown = route_charges(m)
        for charge in self._charges:
            self._gauge(charge.kind).set(self._key(charge), charge.value)
        for kind in unknown:  # a figure the bundle cannot attribute to a route: say so
            self._gauge(kind).set((m.name, "cascade", "unknown", ""), float("nan"))
            log.warning(
                f"{m.name}: cascade without per-model {kind} figures; "
                f"serving_{'energy_joules' if kind == 'energy' else 'cost_usd'}_total charges "
                "it nothing (re-export with profiles={'small': ..., 'large': ...})",
                extra={"model": m.name, "figure": kind},
            )
        if m.cost.instance_usd_per_h is not None:
            metrics.instance_usd_per_hour.set(self.label, m.cost.instance_usd_per_h)
        metrics.ready.set(self.label, 0)

    async def start(self) -> None:
        """Warm every model up (in a thread, so the server stays live), start the workers."""
        loop = asyncio.get_running_loop()
        for batcher in self.batchers.values():
            await loop.run_in_executor(None, batcher.model.warm_up, batcher.max_batch_rows)
            batcher.start(loop)
        self.ready = True
        self.metrics.ready.set(self.label, 1)

    async def close(self) -> None:
        for batcher in self.batchers.values():
            if batcher.started:
                await batcher.close()

    def arrive(self) -> None:
        self.front.arrive()

    def depart(self) -> None:
        self.front.depart()

    def admit(self) -> None:
        """Refuse (503, Retry-After) a request that could not be queued, before it is decoded.

        With a cache a hit needs no queue, so the refusal waits for :meth:`infer`.
        """
        if self.cache is not None or not self.ready:
            return
        try:
            self.front.admit()
        except Overloaded as exc:
            raise ProtocolError(str(exc), 503, retry_after_s=exc.retry_after_s) from None

    async def infer(self, request: InferRequest) -> dict[str, np.ndarray]:
        """Outputs for ``request`` (announced with :meth:`arrive` before its body was read)."""
        if not self.ready:
            self.front.depart()
            raise ProtocolError(f"model {self.name!r} is warming up; retry", 503, retry_after_s=1)
        key = None
        if self.cache is not None:
            key = self.cache.key(self.name, self.version, request.inputs)
            hit = self.cache.get(key)
            if hit is not None:
                self.front.depart()
                self.metrics.cache_hits.inc(self.label)
                self._count(request.rows, cached=True)
                return hit
            self.metrics.cache_misses.inc(self.label)
        escalated = 0
        try:
            if self.router is None:
                outputs, queue_s = await self.front.submit(request.inputs, request.rows)
            else:
                outputs, escalated, queue_s = await self.router.infer(request.inputs, request.rows)
                self._count_cascade(request.rows, escalated)
        except Overloaded as exc:
            raise ProtocolError(str(exc), 503, retry_after_s=exc.retry_after_s) from None
        except BatchTooLarge as exc:
            raise ProtocolError(str(exc), 400) from None
        except Exception as exc:  # ONNX Runtime refused or failed on this input
            status = (
                400
                if "INVALID_ARGUMENT" in str(exc)
                or type(exc).__name__ in ("InvalidArgument", "Fail")
                else 500
            )
            raise ProtocolError(
                f"model {self.name!r} failed on this input: {exc}", status
            ) from None
        self.metrics.queue_seconds.observe(self.label, queue_s)
        if key is not None:
            self.cache.put(key, outputs)
        self._count(request.rows, escalated=escalated)
        return outputs

    def _count(self, rows: int, *, escalated: int = 0, cached: bool = False) -> None:
        """Count ``rows`` predictions; charge each model for the rows it ran (none on a hit)."""
        m = self.metrics
        m.predictions.inc(self.label, rows)
        if cached:  # answered from memory: no model ran, so no model energy or model time
            m.cache_hit_rows.inc(self.label, rows)
            return
        for charge in self._charges:
            ran = escalated if charge.role == "large" else rows
            total = m.energy_total if charge.kind == "energy" else m.cost_total
            total.inc(self._key(charge), charge.value * ran)

    def _key(self, charge: Charge) -> tuple[str, str, str, str]:
        return (self.name, charge.role, charge.method, charge.profile_method)

    def _gauge(self, kind: str) -> Any:
        m = self.metrics
        return m.energy_per_prediction if kind == "energy" else m.cost_per_prediction

    def _count_cascade(self, rows: int, escalated: int) -> None:
        self.metrics.cascade_rows.inc(self.label, rows)
        self.metrics.escalated_rows.inc(self.label, escalated)
        total = self.metrics.cascade_rows.get(self.label)
        self.metrics.escalation_ratio.set(
            self.label, self.metrics.escalated_rows.get(self.label) / total
        )

    # -- descriptions ----------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """V2 model metadata."""
        return {
            "name": self.name,
            "versions": [self.version],
            "platform": PLATFORM,
            "inputs": _tensors(self.signature.inputs),
            "outputs": _tensors(self.signature.outputs),
        }

    def triton_config(self) -> dict[str, Any]:
        """Triton's model configuration (what perf_analyzer reads)."""
        batching = self.front.model.batch_axis
        max_batch = self.manifest.batching.max_batch_rows if batching else 0

        def tensors(sig: dict[str, tuple[str, tuple[int, ...]]]) -> list[dict[str, Any]]:
            return [
                {"name": n, "data_type": f"TYPE_{t}", "dims": list(s[1:] if max_batch else s)}
                for n, (t, s) in sig.items()
            ]

        config: dict[str, Any] = {
            "name": self.name,
            "platform": PLATFORM,
            "backend": "onnxruntime",
            "max_batch_size": max_batch,
            "input": tensors(self.signature.inputs),
            "output": tensors(self.signature.outputs),
            "instance_group": [{"count": self.manifest.threads.instances, "kind": "KIND_CPU"}],
        }
        if batching and self.manifest.batching.enabled:
            delay_us = int(self.manifest.batching.max_delay_ms * 1000)
            config["dynamic_batching"] = {"max_queue_delay_microseconds": delay_us}
        return config

    def _check_manifest_signature(self) -> None:
        """The ONNX file must take what the manifest says (a stale manifest is refused)."""
        declared = self.manifest.model("main" if self.manifest.cascade is None else "small")
        for kind, metas, actual in (
            ("input", declared.inputs, self.signature.inputs),
            ("output", declared.outputs, self.signature.outputs),
        ):
            for meta in metas:
                if actual.get(meta.name, (None, None))[0] != meta.datatype:
                    raise BundleError(
                        f"{self.bundle.path / declared.file}: the manifest declares {kind} "
                        f"{meta.name!r} ({meta.datatype}) but the model has {actual}; re-export"
                    )


def _tensors(sig: dict[str, tuple[str, tuple[int, ...]]]) -> list[dict[str, Any]]:
    return [{"name": n, "datatype": t, "shape": list(s)} for n, (t, s) in sig.items()]


def route_charges(m: Manifest) -> tuple[list[Charge], list[str]]:
    """What each row costs by the model that runs it, and the kinds (``energy``, ``cost``) a
    cascade has a bundle figure for but cannot attribute to its models (charged nothing).

    A single model: the manifest's ``profile`` energy and its cost per million. A cascade: each
    model's own ``profile`` (``energy_j_per_item``; ``usd_per_million``); the bundle's profile
    is not split between the two models, whose cost per row differs. A typed-in cost per million
    (no profile behind it) is charged per answered row of the bundle either way.
    """
    if m.cascade is None:
        charges = _energy("main", m.profile)
        if m.cost.usd_per_million is not None:
            charges.append(_bundle_cost("main", m))
        return charges, []
    small, large = m.model("small").profile, m.model("large").profile
    charges, unknown = [], []
    energy = _energy("small", small) + _energy("large", large)
    if len(energy) == 2:
        charges += energy
    else:  # half a route's figures would undercount; charge none rather than guess
        unknown.append("energy")
    costs = _model_cost("small", small) + _model_cost("large", large)
    if len(costs) == 2:
        charges += costs
    elif m.cost.usd_per_million is not None and m.cost.utilisation is None:
        charges.append(_bundle_cost("cascade", m))  # typed in per prediction, not per model
    elif m.cost.usd_per_million is not None:
        unknown.append("cost")  # priced from one profile that no route ran alone
    return charges, unknown


def _energy(role: str, profile: dict[str, Any]) -> list[Charge]:
    value = profile.get("energy_j_per_item")
    if not _figure(value):
        return []
    made = str(profile.get("energy_method") or "estimated")
    return [Charge("energy", role, float(value), "profile", made)]


def _model_cost(role: str, profile: dict[str, Any]) -> list[Charge]:
    value = profile.get("usd_per_million")
    if not _figure(value):
        return []
    made = str(profile.get("cost_method") or "estimated")
    return [Charge("cost", role, float(value) / 1e6, "profile", made)]


def _bundle_cost(role: str, m: Manifest) -> Charge:
    """The manifest's cost per million: from the profile's throughput when the export priced
    it (``utilisation`` set), else a figure typed in."""
    per_row = m.cost.usd_per_million / 1e6
    if m.cost.utilisation is not None:
        return Charge("cost", role, per_row, "profile", m.cost.method or "estimated")
    return Charge("cost", role, per_row, "typed in", "")


def _figure(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
