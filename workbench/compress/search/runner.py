"""Automatic optimisation: search variants x batch size x threads, measure each configuration's
quality (held-out data), latency, throughput, memory, size and energy, keep the Pareto frontier,
and recommend one configuration under the user's constraints, saying why it won (:func:`optimize`).

Strategies: ``grid`` measures every configuration for ``measure_seconds``; ``halving``
(successive halving) measures all of them briefly, keeps the best third (constraint-meeting
ones first, then by the objective), measures those three times longer, and so on until a few
remain, measured for ``measure_seconds``. A search stopped by Ctrl-C, by ``stop()`` returning
true, or by its ``budget_s`` keeps every finished measurement and recommends from them.

Every measurement is stored in the run store as a ``variant`` run (profile metrics, quality
figures and method labels; linked by the search id as ``sweep_id``), and the outcome as one
``optimize`` run.

Example
-------
>>> STRATEGIES, MIN_MEASURE_SECONDS
(('grid', 'halving'), 0.1)
>>> 1 in default_threads()
True

(:func:`optimize` has a full example.)
"""

from __future__ import annotations

import dataclasses
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.compress.quality import Quality, TaskData, evaluate, predict, task_data
from workbench.compress.registry import (
    BuildContext,
    Variant,
    VariantSpec,
    build_variant,
    get_spec,
)
from workbench.compress.search.attribution import (
    ChainConfig,
    GainAttribution,
    MeasuredConfig,
    fp32_variant,
    measure_attribution,
)
from workbench.compress.search.candidates import OBJECTIVES, Candidate, pareto_frontier
from workbench.compress.search.constraints import Constraints
from workbench.compress.search.recommendation import Recommendation, recommend
from workbench.errors import ConfigError, ConstraintError, WorkbenchError
from workbench.measure.backends import check_threads, logical_cores, make_runner
from workbench.measure.profiling import Profile, profile
from workbench.measure.store import RunStore, open_store
from workbench.models import ModelHandle, load_model
from workbench.paths import cache_dir

STRATEGIES = ("grid", "halving")
#: Every registered variant, cheapest to build first (distillation trains longest).
DEFAULT_VARIANTS = (
    "torch-fp32",
    "ort-fp32",
    "ort-fp32-opt-extended",
    "ort-fp32-opt-basic",
    "ort-fp32-opt-disabled",
    "ort-int8-dynamic",
    "ort-int8-dynamic-per-channel",
    "ort-int8-weight-only",
    "ort-int4-weight-only",
    "ort-int8-mixed",
    "ort-int8-static-minmax",
    "ort-int8-static-minmax-per-channel",
    "ort-int8-static-entropy",
    "ort-int8-static-percentile",
    "torch-bf16",
    "torch-fp16-cuda",
    "ort-fp16-cuda",
    "torch-int8-dynamic",
    "torch-prune-magnitude",
    "torch-prune-structured",
    "ort-prune-structured",
    "torch-distill",
    "ort-distill",
)
HALVING_ETA = 3
MIN_MEASURE_SECONDS = 0.1


@dataclass
class SearchResult:
    """What a search measured, skipped and recommended."""

    search_id: str
    model: str
    strategy: str
    objective: str
    constraints: Constraints
    candidates: list[Candidate]
    skipped: list[dict[str, str]]
    baseline: Candidate | None
    recommendation: Recommendation | None = None
    unmet: str | None = None
    interrupted: bool = False
    stopped: str | None = None
    seconds: float = 0.0
    #: The recommendation's gain over the baseline split into runtime, threads, batch size and
    #: compression, each step measured (None: not asked for, no recommendation or baseline, or
    #: the search was stopped or interrupted first).
    attribution: GainAttribution | None = None

    #: The columns of :meth:`to_frame` a table of configurations shows (the CLI, the compression
    #: panel, which adds the run ids).
    SUMMARY_COLUMNS = (
        "variant",
        "backend",
        "batch_size",
        "threads",
        "quality_drop",
        "nn_agreement",
        "latency_ms_p99",
        "throughput_items_per_s",
        "energy_j_per_item",
        "energy_method",
        "size_mb",
        "memory_mb",
    )

    def to_frame(self) -> pd.DataFrame:
        """One row per measured configuration."""
        return pd.DataFrame([c.to_dict() for c in self.candidates if c.profile is not None])

    def frontier(self) -> pd.DataFrame:
        """The Pareto frontier over quality drop, p99, J/inference and size."""
        frame = self.to_frame()
        return frame if frame.empty else pareto_frontier(frame).sort_values("energy_j_per_item")

    def variants_frame(self) -> pd.DataFrame:
        """One row per built variant: quality figures, size, and what was done."""
        seen: dict[str, Candidate] = {}
        for c in self.candidates:
            seen.setdefault(c.name, c)
        return pd.DataFrame(
            [
                {
                    "variant": c.name,
                    "family": c.variant.family,
                    "backend": c.variant.backend,
                    "size_mb": c.size_mb,
                    **c.quality.to_dict(),
                }
                for c in seen.values()
            ]
        )

    def summary(self) -> dict[str, Any]:
        """JSON-able outcome (stored as the ``optimize`` run)."""
        rec = self.recommendation
        out: dict[str, Any] = {
            "search_id": self.search_id,
            "model": self.model,
            "strategy": self.strategy,
            "objective": self.objective,
            "constraints": dataclasses.asdict(self.constraints),
            "search_seconds": self.seconds,
            "configurations_measured": len(self.to_frame()),
            "variants_skipped": len(self.skipped),
            "interrupted": self.interrupted,
            "stopped": self.stopped,
            "unmet": self.unmet,
        }
        if rec is not None:
            out.update(rec.to_dict())
        if self.baseline is not None and self.baseline.profile is not None:
            out.update({f"baseline_{k}": v for k, v in self.baseline.to_dict().items()})
        if self.attribution is not None:
            out.update(self.attribution.metrics())
        return out


def default_threads() -> list[int]:
    cores = logical_cores()
    return sorted({1, cores})


def optimize(
    model: Any,
    *,
    max_quality_drop: float | str | None = 0.01,
    slo_p99_ms: float | str | None = None,
    memory_cap_mb: float | None = None,
    min_nn_agreement: float | str | None = None,
    variants: Sequence[str | VariantSpec | Callable[..., Any]] | None = None,
    extra_variants: Sequence[str | VariantSpec | Callable[..., Any]] = (),
    batch_sizes: Sequence[int] = (1, 8, 32),
    threads: Sequence[int] | None = None,
    strategy: str = "halving",
    objective: str = "energy",
    budget_s: float | None = None,
    measure_seconds: float = 1.0,
    data: TaskData | Mapping[str, Any] | None = None,
    store: RunStore | str | Path | bool | None = None,
    meter: Any = None,
    seed: int = 0,
    work_dir: Path | None = None,
    progress: bool = True,
    stop: Callable[[], bool] | None = None,
    attribute: bool = True,
) -> SearchResult:
    """Search compression variants x batch size x threads and recommend one configuration.

    Parameters
    ----------
    model: anything :func:`workbench.models.handle.load_model` takes.
    max_quality_drop, slo_p99_ms, memory_cap_mb, min_nn_agreement: see :class:`Constraints`;
        strings with units work (``"1%"``, ``"20ms"``).
    variants: names (see :func:`workbench.compress.registry.variant_specs`), specs, or callables
        ``fn(model) -> model``; default :data:`DEFAULT_VARIANTS`. ``extra_variants`` adds to it.
    batch_sizes, threads: the other axes (threads default: 1 and all cores).
    strategy: ``grid`` or ``halving``; objective: ``energy``, ``throughput``, ``latency`` or
        ``size``; budget_s: wall-clock budget of the whole search (stops and keeps results).
    measure_seconds: timing (and energy) window of a final measurement per configuration.
    data: held-out, calibration and training data (built in for the demo models): a
        :class:`~workbench.compress.quality.TaskData`, or the keyword arguments of
        :func:`~workbench.compress.quality.task_data` (``{"held_out": X, "labels": y}``).
    store: run store (``None``: default store; ``False``: none).
    stop: called between steps; returning true stops the search, keeping what finished.
    attribute: split the gain over the baseline into measured steps (``result.attribution``).

    Example
    -------
    >>> result = optimize("digits-mlp", variants=["ort-int8-dynamic-per-channel"],
    ...                   batch_sizes=[8], threads=[1], measure_seconds=0.1, store=False,
    ...                   progress=False)  # doctest: +SKIP
    >>> result.recommendation.candidate.label  # doctest: +SKIP
    'ort-int8-dynamic-per-channel b=8 t=1'
    """
    constraints = Constraints(max_quality_drop, slo_p99_ms, memory_cap_mb, min_nn_agreement)
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy={strategy!r} is not one of {', '.join(STRATEGIES)}")
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective={objective!r} is not one of {', '.join(OBJECTIVES)}")
    if budget_s is not None and not budget_s > 0:
        raise ConfigError(f"budget_s={budget_s!r} must be > 0 seconds (or None for no limit)")
    if not measure_seconds >= MIN_MEASURE_SECONDS:
        raise ConfigError(f"measure_seconds={measure_seconds!r} must be >= {MIN_MEASURE_SECONDS}")
    specs, batches, thread_counts = _check_axes(variants, extra_variants, batch_sizes, threads)
    settings = SearchSettings(
        constraints,
        specs,
        batches,
        thread_counts,
        strategy=strategy,
        objective=objective,
        budget_s=budget_s,
        measure_seconds=float(measure_seconds),
        meter=meter,
        store=store,
        progress=progress,
        stop=stop,
        seed=seed,
        work_dir=work_dir,
        attribute=attribute,
    )
    return _Search(settings).execute(model, data)


def _check_axes(
    variants: Sequence[str | VariantSpec | Callable[..., Any]] | None,
    extra_variants: Sequence[str | VariantSpec | Callable[..., Any]],
    batch_sizes: Sequence[int],
    threads: Sequence[int] | None,
) -> tuple[list[VariantSpec], list[int], list[int]]:
    """The variants, batch sizes and thread counts a search spans, checked."""
    batches = _check_batch_sizes(batch_sizes)
    thread_counts = sorted({check_threads(t) for t in (threads or default_threads())})
    specs = [get_spec(v) for v in (variants if variants is not None else DEFAULT_VARIANTS)]
    specs += [get_spec(v) for v in extra_variants]
    if not specs:
        raise ConfigError("variants is empty: name at least one variant to measure")
    return specs, batches, thread_counts


def _check_batch_sizes(values: Sequence[int]) -> list[int]:
    out = []
    for b in values:
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
            raise ConfigError(f"batch size {b!r} must be a whole number >= 1")
        out.append(int(b))
    if not out:
        raise ConfigError("batch_sizes is empty: give at least one, e.g. [1, 8, 32]")
    return sorted(set(out))


def measure_window(
    handle: ModelHandle,
    seconds: float,
    *,
    backend: str,
    batch_size: int,
    threads: int,
    device: str = "cpu",
    meter: Any = None,
) -> Profile:
    """How the search measures one configuration: back-to-back calls for ``seconds`` with energy
    over the same window, no idle baseline, no operator pass, nothing stored. Baselines compared
    with search results must be measured this way too."""
    return profile(
        handle,
        backend=backend,
        device=device,
        batch_size=batch_size,
        threads=threads,
        warmup=3,
        iterations=10**7,
        min_iterations=3,
        max_seconds=seconds,
        energy=True,
        energy_min_seconds=seconds,
        idle_seconds=0,
        operators=False,
        store=False,
        meter=meter,
    )


def search_meter(variants: Iterable[Variant], *, nvml: Any = None) -> Any:
    """The meter a search measures every configuration with (unless it is given one): the best
    this machine allows, with the GPU (NVML) included when any variant runs on CUDA, so CUDA
    variants are never ranked by a host-CPU estimate alone; where the GPU cannot be read, every
    reading says why (:func:`workbench.energy.auto.auto_meter_for`). The same meter times the
    CPU variants of a mixed search, so every configuration is charged the whole machine.
    ``nvml``: the NVML module (tests pass a fake)."""
    from workbench.energy.auto import auto_meter_for

    return auto_meter_for({v.device for v in variants}, nvml=nvml)


@dataclass(frozen=True)
class SearchSettings:
    """The checked arguments of :func:`optimize`: the axes, the strategy, and where to record."""

    constraints: Constraints
    specs: list[VariantSpec]
    batch_sizes: list[int]
    threads: list[int]
    strategy: str = "halving"
    objective: str = "energy"
    budget_s: float | None = None
    measure_seconds: float = 1.0
    meter: Any = None
    store: RunStore | str | Path | bool | None = None
    progress: bool = True
    stop: Callable[[], bool] | None = None
    seed: int = 0
    work_dir: Path | None = None
    attribute: bool = True


@dataclass(frozen=True)
class BuildInputs:
    """What every variant is built from and judged against."""

    base: ModelHandle  # the model, timed on real held-out items
    ctx: BuildContext
    reference: np.ndarray  # the fp32 model's outputs on the held-out data
    data: TaskData


class _Search:
    """One search's state: the clock, the store, the skipped list and the measurements."""

    def __init__(self, settings: SearchSettings) -> None:
        self.settings = settings
        self.meter = settings.meter
        self.db: RunStore | None = None
        self.start = time.monotonic()
        self.candidates: list[Candidate] = []
        self.baseline: Candidate | None = None
        self.skipped: list[dict[str, str]] = []
        self.stopped: str | None = None
        self.search_id = uuid.uuid4().hex[:12]

    # -- control

    def should_stop(self) -> bool:
        if self.stopped:
            return True
        budget_s = self.settings.budget_s
        if budget_s is not None and time.monotonic() - self.start > budget_s:
            self.stopped = f"budget of {budget_s:g} s spent"
        elif self.settings.stop is not None and self.settings.stop():
            self.stopped = "stopped by the caller"
        return self.stopped is not None

    def skip(self, variant: str, stage: str, exc: BaseException) -> None:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if not isinstance(exc, WorkbenchError):
            text = f"{type(exc).__name__}: {text}"
        self.skipped.append({"variant": variant, "stage": stage, "reason": text[:500]})

    # -- the steps

    def execute(self, model: Any, data: TaskData | Mapping[str, Any] | None) -> SearchResult:
        """Build, judge and measure; recommend from what finished, even after Ctrl-C."""
        handle = load_model(model)
        inputs = self.prepare(handle, data)
        interrupted = False
        with open_store(self.settings.store) as db:
            self.db = None if self.settings.store is False else db  # False: keep no record
            try:
                self.search(inputs, handle.name)
            except KeyboardInterrupt:
                interrupted = True
            result = self.outcome(handle.name, interrupted)
            result.attribution = self.attribute(inputs, result)
            result.seconds = time.monotonic() - self.start
            self.record(db, handle, result)
        return result

    def prepare(
        self, handle: ModelHandle, data: TaskData | Mapping[str, Any] | None
    ) -> BuildInputs:
        """The task data, the model timed on it, and the fp32 outputs variants are judged by."""
        if not isinstance(data, TaskData):
            data = task_data(handle, seed=self.settings.seed, **(data or {}))
        # time real held-out items (length-bucketed sentences), not synthetic inputs
        base = dataclasses.replace(handle, make_inputs=data.held_out.example_feed)
        work = self.settings.work_dir or (
            cache_dir() / "variants" / f"{handle.name}-{handle.fingerprint[:12]}"
        )
        ctx = BuildContext(data, Path(work), self.settings.seed)
        ref_backend = "torch" if base.torch_module is not None else "onnxruntime"
        ref_runner = make_runner(base, ref_backend)
        try:
            reference = predict(ref_runner, data.held_out)
        finally:
            ref_runner.close()
        return BuildInputs(base, ctx, reference, data)

    def search(self, inputs: BuildInputs, model: str) -> None:
        """Build every variant, measure the baseline, then every configuration."""
        built = self.build_all(inputs, model)
        # one meter for every configuration, chosen once the variants' devices are known
        self.meter = self.meter or search_meter(variant for variant, _ in built)
        self.baseline = self.measure_baseline(inputs, built)
        self.candidates = configurations(
            built, self.settings.batch_sizes, self.settings.threads, self.baseline
        )
        if self.settings.strategy == "grid":
            self.rung(self.candidates, self.settings.measure_seconds, 0, model)
        else:
            self.halving(self.candidates, model)

    def build_all(self, inputs: BuildInputs, model: str) -> list[tuple[Variant, Quality]]:
        from tqdm.auto import tqdm

        bar = tqdm(
            self.settings.specs,
            desc=f"building {model} variants",
            unit="variant",
            disable=not self.settings.progress,
        )
        built: list[tuple[Variant, Quality]] = []
        for spec in bar:
            if self.should_stop():
                break
            bar.set_postfix_str(spec.name)
            got = self.build(spec, inputs)
            if got is not None:
                built.append(got)
        bar.close()
        return built

    def outcome(self, model: str, interrupted: bool) -> SearchResult:
        s = self.settings
        result = SearchResult(
            self.search_id,
            model,
            s.strategy,
            s.objective,
            s.constraints,
            self.candidates,
            self.skipped,
            self.baseline,
            interrupted=interrupted,
            stopped=self.stopped,
        )
        try:
            result.recommendation = recommend(
                self.candidates, s.constraints, s.objective, self.baseline
            )
        except ConstraintError as exc:
            result.unmet = str(exc)
        result.seconds = time.monotonic() - self.start
        return result

    def record(self, db: RunStore, handle: ModelHandle, result: SearchResult) -> None:
        s = self.settings
        db.add(
            "optimize",
            model=handle.name,
            fingerprint=handle.fingerprint,
            config={
                "strategy": s.strategy,
                "objective": s.objective,
                "constraints": dataclasses.asdict(s.constraints),
                "variants": [spec.name for spec in s.specs],
                "batch_sizes": s.batch_sizes,
                "threads": s.threads,
            },
            metrics=result.summary(),
            sweep_id=self.search_id,
            details={
                "skipped": self.skipped,
                "frontier": result.frontier().to_dict(orient="records"),
                "attribution": None if result.attribution is None else result.attribution.to_dict(),
            },
        )

    def attribute(self, inputs: BuildInputs, result: SearchResult) -> GainAttribution | None:
        """The winner's gain over the baseline, one measured change at a time; None where there
        is nothing to split, or the caller stopped the search (more measuring would defy it)."""
        rec, base = result.recommendation, self.baseline
        if not self.settings.attribute or rec is None or base is None or base.profile is None:
            return None
        if result.interrupted or self.stopped:
            return None
        winner = rec.candidate
        try:
            fp32 = self.fp32_form(fp32_variant(winner.variant.backend), inputs)

            def measure(config: ChainConfig) -> MeasuredConfig:
                p = measure_window(
                    fp32.handle,
                    winner.measure_seconds,
                    backend=config.backend,
                    device=config.device,
                    batch_size=config.batch_size,
                    threads=config.threads,
                    meter=self.meter,
                )
                joules = p.energy.energy_j_per_item
                return MeasuredConfig(
                    config,
                    1 / joules if joules > 0 else float("nan"),
                    p.throughput_items_per_s,
                    p.energy.method,
                    winner.measure_seconds,
                )

            return measure_attribution(base, winner, measure, self.candidates)
        except KeyboardInterrupt:  # Ctrl-C here keeps the recommendation, without the split
            result.interrupted = True
            return None
        except Exception as exc:  # a failed intermediate costs the table, not the search
            self.skip("gain attribution", "attribution", exc)
            return None

    def fp32_form(self, name: str, inputs: BuildInputs) -> Variant:
        """The fp32 variant ``name``: the one the search built, else built now."""
        for c in [self.baseline, *self.candidates]:
            if c is not None and c.name == name:
                return c.variant
        return build_variant(get_spec(name), inputs.base, inputs.ctx)

    def build(self, spec: VariantSpec, inputs: BuildInputs) -> tuple[Variant, Quality] | None:
        started = time.monotonic()
        try:
            variant = build_variant(spec, inputs.base, inputs.ctx)
            variant.metadata["build_seconds"] = round(time.monotonic() - started, 3)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # VariantSkipped, or a conversion failure: the search goes on
            self.skip(spec.name, "build", exc)
            return None
        try:
            runner = make_runner(variant.handle, variant.backend, variant.device)
            try:
                outputs = predict(runner, inputs.data.held_out)
            finally:
                runner.close()
            quality = evaluate(outputs, inputs.reference, inputs.data)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            self.skip(spec.name, "quality", exc)
            return None
        return variant, quality

    def measure_baseline(
        self, inputs: BuildInputs, built: list[tuple[Variant, Quality]]
    ) -> Candidate | None:
        """fp32 PyTorch eager at batch 1 on all cores, measured for the full window."""
        if inputs.base.torch_module is None:
            return None
        found = next(((v, q) for v, q in built if v.name == "torch-fp32"), None)
        if found is None:
            found = self.build(get_spec("torch-fp32"), inputs)
            if found is None:
                return None
        cand = Candidate(found[0], found[1], 1, logical_cores())
        if not self.should_stop():
            self.measure(cand, self.settings.measure_seconds, 0, inputs.base.name)
        return cand

    def halving(self, candidates: list[Candidate], model: str) -> None:
        n = len(candidates)
        rungs = max(0, math.ceil(math.log(max(n, 1) / HALVING_ETA, HALVING_ETA))) + 1
        alive = list(candidates)
        for k in range(rungs):
            seconds = max(
                MIN_MEASURE_SECONDS, self.settings.measure_seconds / HALVING_ETA ** (rungs - 1 - k)
            )
            self.rung(alive, seconds, k, model)
            if k == rungs - 1 or self.stopped:
                return
            ranked = sorted(alive, key=self.rank_key)
            alive = ranked[: max(1, math.ceil(len(alive) / HALVING_ETA))]

    def rank_key(self, c: Candidate) -> tuple[int, float, float]:
        if c.profile is None:
            return (2, float("inf"), float("inf"))
        checks = self.settings.constraints.checks(c)
        excess = sum(ch.excess for ch in checks)
        return (0 if excess == 0 else 1, excess, c.objective(self.settings.objective))

    def rung(self, alive: list[Candidate], seconds: float, k: int, model: str) -> None:
        from tqdm.auto import tqdm

        todo = [c for c in alive if c.measure_seconds < seconds]
        if not todo:
            return
        bar = tqdm(
            todo,
            desc=f"rung {k}: {seconds:.2g} s each",
            unit="config",
            disable=not self.settings.progress,
        )
        for c in bar:
            if self.should_stop():
                break
            bar.set_postfix_str(c.label)
            self.measure(c, seconds, k, model)
        bar.close()

    def measure(self, c: Candidate, seconds: float, rung: int, model: str) -> None:
        try:
            p = measure_window(
                c.variant.handle,
                seconds,
                backend=c.variant.backend,
                device=c.variant.device,
                batch_size=c.batch_size,
                threads=c.threads,
                meter=self.meter,
            )
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            self.skip(c.label, "profile", exc)
            return
        c.profile, c.rung, c.measure_seconds = p, rung, seconds
        if self.db is not None:
            c.run_id = self.db.add(
                "variant",
                model=model,
                fingerprint=c.variant.handle.fingerprint,
                config={
                    **p.config_dict(),
                    "variant": c.name,
                    "family": c.variant.family,
                    "params": c.variant.params,
                    "strategy": self.settings.strategy,
                    "rung": rung,
                    "measure_seconds": seconds,
                },
                metrics={
                    **p.metrics_dict(),
                    **c.quality.to_dict(),
                    "variant": c.name,
                    "memory_mb": c.memory_mb,
                    "memory_method": "estimated: model size + measured peak RSS growth",
                    "items_per_joule": c.items_per_joule,
                },
                environment=p.environment,
                sweep_id=self.search_id,
                details={"variant_metadata": c.variant.metadata},
            )


def configurations(
    built: Sequence[tuple[Variant, Quality]],
    batch_sizes: Sequence[int],
    threads: Sequence[int],
    baseline: Candidate | None,
) -> list[Candidate]:
    """Every built variant at every batch size (and, on CPU, thread count), the baseline first
    unless it is one of them, where its measurement takes that configuration's place."""
    candidates = []
    for variant, quality in built:
        device_threads = threads if variant.device == "cpu" else [threads[-1]]
        for b in batch_sizes:
            for t in device_threads:
                candidates.append(Candidate(variant, quality, b, t))
    if baseline is not None:
        same = [c for c in candidates if _same_config(c, baseline)]
        if same:
            candidates[candidates.index(same[0])] = baseline
        else:
            candidates.insert(0, baseline)
    return candidates


def _same_config(a: Candidate, b: Candidate) -> bool:
    return (a.name, a.batch_size, a.threads) == (b.name, b.batch_size, b.threads)
