"""Export a model as a serving bundle: ONNX, manifest, checksums, runtime and deployment files.

The bundle is a folder that runs without the workbench (``python -m serving BUNDLE``, or its
Dockerfile): the model(s) as ONNX; ``manifest.json`` (schema in :mod:`serving.manifest`: inputs
and outputs, batching, threads, cache, cascade, SLO, the measured profile and its energy method,
cost per million predictions, monthly budget); a copy of the ``serving`` package and its pinned
``requirements.txt``; a ``Dockerfile``; Kubernetes manifests (Deployment, Service,
HorizontalPodAutoscaler, KServe InferenceService); Prometheus alert rules (p99 SLO, cost budget);
a Ray Serve config; and ``SHA256SUMS`` over every file. No pickles. The folder (and the archive,
if asked for) is written under a temporary name, verified with the runtime's own loader, then
renamed into place, so a crash or a full disk never leaves a half-written bundle behind; a failed
write raises :class:`workbench.errors.ExportError` naming the file and the cause.

This module checks the settings, builds the manifest and writes the files; the deployment
documents come from :mod:`workbench.ship.docker`, :mod:`workbench.ship.kubernetes`,
:mod:`workbench.ship.alerts` and :mod:`workbench.ship.ray`.

Example
-------
>>> info = export("digits-mlp", "bundles/digits-mlp", slo_p99_ms=20)      # doctest: +SKIP
>>> info.manifest.batching.max_batch_rows                                    # doctest: +SKIP
32
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tarfile
import tempfile
import warnings
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from serving.manifest import (
    MANIFEST,
    Batching,
    BundleError,
    Cache,
    Cascade,
    Cost,
    Energy,
    Manifest,
    ModelFile,
    Scaling,
    Slo,
    TensorMeta,
    Threads,
    current_names,
    load_bundle,
    parse_manifest,
    write_checksums,
)
from workbench.errors import ConfigError, ExportError, ModelLoadError
from workbench.ship.alerts import alert_rules_yaml
from workbench.ship.docker import DOCKERIGNORE, PORT, copy_runtime, dockerfile
from workbench.ship.kubernetes import default_scaling, kubernetes_manifests
from workbench.ship.ray import ray_serve_config

#: Profile figures copied into the manifest when present.
PROFILE_FIELDS = (
    "run_id",
    "model",
    "fingerprint",
    "backend",
    "device",
    "batch_size",
    "threads",
    "latency_ms_p50",
    "latency_ms_p95",
    "latency_ms_p99",
    "throughput_items_per_s",
    "latency_method",
    "energy_j_per_item",
    "energy_method",
    "power_w_avg",
    "memory_peak_mb",
)


@dataclass(frozen=True)
class BundleInfo:
    """A written bundle: its folder, its archive (if asked for), manifest and checksums."""

    path: Path
    manifest: Manifest
    checksums: dict[str, str]
    archive: Path | None = None


@dataclass(frozen=True)
class _Settings:
    """What :func:`export` was asked for, checked while the manifest is built."""

    name: str
    version: str
    batching: Any
    threads: Any
    cache: Any
    threshold: float | None  # None: no cascade
    confidence: str
    scaling: Any
    slo_p99_ms: float | None
    monthly_budget_usd: float | None
    instance_usd_per_h: float | None
    usd_per_million: float | None
    utilisation: float
    figures: dict[str, Any]
    model_figures: dict[str, dict[str, Any]]  # a cascade's figures by role ({} when not given)


def export(
    model_or_handle: Any,
    out_dir: str | Path,
    *,
    batching: bool | dict[str, Any] | Batching = True,
    threads: int | dict[str, Any] | Threads | None = None,
    cache: bool | dict[str, Any] | Cache = False,
    cascade: tuple[Any, Any, float] | None = None,
    confidence: str = "max_softmax",
    scaling: dict[str, Any] | Scaling | None = None,
    slo_p99_ms: float | None = None,
    monthly_budget_usd: float | None = None,
    instance_usd_per_h: float | None = None,
    usd_per_million: float | None = None,
    utilisation: float = 0.5,
    profile: Any = None,
    profiles: dict[str, Any] | None = None,
    store: Any = None,
    name: str | None = None,
    version: str = "1",
    tar: bool = False,
    overwrite: bool = False,
) -> BundleInfo:
    """Write a serving bundle for a model (anything ``load_model`` takes) to ``out_dir``.

    Parameters
    ----------
    batching: ``True``/``False``, or fields of :class:`serving.manifest.Batching`
        (``max_batch_rows``, ``max_delay_ms``, ``max_queue_rows``).
    threads: ONNX Runtime intra-op threads (an int), or fields of
        :class:`serving.manifest.Threads` (``threads``, ``instances``, ...; ``intra_op``, the
        older name of ``threads``, still works).
    cache: ``True`` for the default response cache, or fields of :class:`serving.manifest.Cache`
        (``max_entries``, ``ttl_s``).
    cascade: ``(small, large, threshold)``: serve ``small`` and escalate rows whose confidence
        (``confidence``: ``max_softmax`` or ``margin``) is below ``threshold`` to ``large``;
        ``model_or_handle`` may then be ``None`` (or must be ``small``).
    scaling: fields of :class:`serving.manifest.Scaling` (``min_replicas``, ``max_replicas``,
        ``target_ongoing_requests``, ``max_ongoing_requests``) for Ray Serve and Kubernetes;
        unset fields follow from batching, threads and the budget
        (:func:`workbench.ship.kubernetes.default_scaling`).
    slo_p99_ms, monthly_budget_usd: objectives for the alert rules.
    instance_usd_per_h: price of one serving instance; with a profile's measured throughput and
        ``utilisation`` it gives the cost per million predictions (or pass ``usd_per_million``).
    profile: a :class:`workbench.measure.profiling.Profile`, a run id in ``store``, or a dict.
        The server charges a single model's rows its energy and cost; a cascade's rows are
        charged by ``profiles`` only.
    profiles: a cascade's per-model figures, ``{"small": ..., "large": ...}`` (each anything
        ``profile`` takes): the server charges every row the small model's energy (and cost,
        priced from its throughput with ``instance_usd_per_h``) and every escalated row the
        large model's too. Without them a cascade's energy is reported unknown.
    tar: also write ``OUT_DIR.tar.gz``.
    overwrite: replace an existing ``out_dir``.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; choose another folder or pass overwrite=True")
    figures = profile_figures(profile, store)
    handles, threshold = _load_models(model_or_handle, cascade)
    default_name = f"{handles['small'].name}-cascade" if threshold is not None else None
    settings = _Settings(
        name=_safe_name(name or default_name or handles["main"].name),
        version=str(version),
        batching=batching,
        threads=threads,
        cache=cache,
        threshold=threshold,
        confidence=confidence,
        scaling=scaling,
        slo_p99_ms=slo_p99_ms,
        monthly_budget_usd=monthly_budget_usd,
        instance_usd_per_h=instance_usd_per_h,
        usd_per_million=usd_per_million,
        utilisation=utilisation,
        figures=figures,
        model_figures=_model_figures(profiles, threshold is not None, store),
    )
    return _write_bundle(out, handles, settings, tar=tar)


# -- inputs --------------------------------------------------------------------------------


def _load_models(model_or_handle: Any, cascade: Any) -> tuple[dict[str, Any], float | None]:
    """The models to export by role (``main``, or ``small`` and ``large``) and the cascade's
    threshold (``None`` without a cascade). Example shapes are not used here, so the loader's
    warning about them is muted."""
    from workbench.models.load import load_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*has a dynamic dimension")
        if cascade is None:
            if model_or_handle is None:
                raise ConfigError(
                    "nothing to export: pass a model (or cascade=(small, large, threshold))"
                )
            return {"main": load_model(model_or_handle)}, None
        small_spec, large_spec, threshold = _cascade_args(cascade)
        small, large = load_model(small_spec), load_model(large_spec)
        if (
            model_or_handle is not None
            and load_model(model_or_handle).fingerprint != small.fingerprint
        ):
            raise ConfigError(
                "with cascade=(small, large, threshold), pass model_or_handle=None or the small "
                "model itself"
            )
        return {"small": small, "large": large}, threshold


def profile_figures(profile: Any, store: Any = None) -> dict[str, Any]:
    """The measured figures to record: from a Profile, a run id in the run store, or a dict."""
    if profile is None:
        return {}
    if isinstance(profile, bool):
        raise ConfigError(f"profile={profile!r}: pass a Profile, a run id, or a dict of figures")
    if isinstance(profile, int):
        from workbench.measure.store import RunStore

        with RunStore(store) as db:
            run = db.get(profile)
        source: dict[str, Any] = {
            **run.config,
            **run.metrics,
            "run_id": run.id,
            "model": run.model,
            "fingerprint": run.fingerprint,
        }
    elif isinstance(profile, dict):
        source = dict(profile)
    elif hasattr(profile, "to_dict"):
        source = dict(profile.to_dict())
        for key in ("energy_j_per_item", "energy_method", "power_w_avg"):
            if hasattr(profile, key):
                source[key] = getattr(profile, key)
    else:
        raise ConfigError(
            f"cannot read a profile from {type(profile).__name__}: pass a "
            "workbench.measure.profiling.Profile, a run id (int) or a dict"
        )
    figures = {k: source[k] for k in PROFILE_FIELDS if source.get(k) is not None}
    if "energy_j_per_item" in figures and "energy_method" not in figures:
        figures["energy_method"] = "estimated"
    return figures


def _model_figures(profiles: Any, cascade: bool, store: Any) -> dict[str, dict[str, Any]]:
    """Each cascade model's figures by role, from ``profiles`` (both roles, or none)."""
    if profiles is None:
        return {}
    if not cascade:
        raise ConfigError(
            "profiles= is for a cascade's two models; pass profile= for a single model"
        )
    if not isinstance(profiles, dict) or set(profiles) != {"small", "large"}:
        raise ConfigError(
            f"profiles={profiles!r} must be {{'small': ..., 'large': ...}}: a route can only "
            "be charged with both models' figures"
        )
    return {role: profile_figures(profiles[role], store) for role in ("small", "large")}


def _cascade_args(cascade: Any) -> tuple[Any, Any, float]:
    try:
        small, large, threshold = cascade
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(
            f"cascade={cascade!r} must be (small, large, threshold), e.g. "
            "('digits-mlp', 'digits-cnn', 0.9)"
        ) from None
    if not 0 <= threshold <= 1:
        raise ConfigError(f"cascade threshold {threshold} must be in [0, 1] (a confidence)")
    return small, large, threshold


def _section(
    cls: type,
    value: Any,
    label: str,
    flag: str | None = None,
    number: str | None = None,
    base: Any = None,
) -> Any:
    """One manifest section from an export setting: ``None`` (the default or ``base``), an
    instance, a bool for ``flag``, an int for ``number``, or a dict of fields over ``base``."""
    if base is None:
        base = cls()
    if value is None:
        return base
    if isinstance(value, cls):
        return value
    if isinstance(value, bool) and flag:
        return cls(**{flag: value})
    if isinstance(value, int) and not isinstance(value, bool) and number:
        return cls(**{number: value})
    if isinstance(value, dict):
        try:  # settings written before a field was renamed keep working
            value = current_names(label, value)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(f"{label} has no setting {unknown[0]!r}; settings: {sorted(known)}")
        return replace(base, **value)
    raise ConfigError(f"{label}={value!r} is not understood; pass a dict of {cls.__name__} fields")


def _positive_or_none(label: str, value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"{label}={value!r} must be a number > 0")
    return float(value)


def _cost(
    figures: dict[str, Any],
    budget: float | None,
    usd_per_h: float | None,
    usd_per_million: float | None,
    utilisation: float,
) -> Cost:
    budget = _positive_or_none("monthly_budget_usd", budget)
    usd_per_h = _positive_or_none("instance_usd_per_h", usd_per_h)
    if not 0 < utilisation <= 1:
        raise ConfigError(f"utilisation={utilisation} must be in (0, 1]")
    if usd_per_million is not None:
        per_million = _positive_or_none("usd_per_million", usd_per_million)
        return Cost(per_million, budget, usd_per_h, None, "typed in")
    throughput = figures.get("throughput_items_per_s")
    if usd_per_h is None or not throughput:
        return Cost(None, budget, usd_per_h, None, "")
    from workbench.provenance import weakest_method

    per_million = usd_per_h / (float(throughput) * 3600 * utilisation) * 1e6
    method = weakest_method("typed in", figures.get("latency_method", "measured"))
    return Cost(per_million, budget, usd_per_h, utilisation, method)


def _priced(s: _Settings, figures: dict[str, Any]) -> dict[str, Any]:
    """One cascade model's figures, with its cost per million predictions (``usd_per_million``,
    ``cost_method``) when its throughput and the instance price give one."""
    if s.usd_per_million is not None:  # typed in for the bundle: charged per answered row
        return dict(figures)
    cost = _cost(figures, s.monthly_budget_usd, s.instance_usd_per_h, None, s.utilisation)
    if cost.usd_per_million is None:
        return dict(figures)
    return {**figures, "usd_per_million": cost.usd_per_million, "cost_method": cost.method}


def _model_file(path: Path, rel: str, role: str, handle: Any) -> ModelFile:
    """What the manifest says of one model: its tensors as ONNX Runtime reads them, and the shape
    of one typical row of each input (from the handle's example inputs), for warm-up."""
    from serving.models import ModelError, OnnxModel

    try:
        model = OnnxModel(path, name=handle.name)
    except ModelError as exc:
        raise ModelLoadError(f"{exc}; export a model ONNX Runtime can load") from exc
    typical = _typical_shapes(handle)
    return ModelFile(
        name=handle.name,
        file=rel,
        role=role,
        inputs=tuple(TensorMeta(n, t, s, typical.get(n)) for n, (t, s) in model.inputs.items()),
        outputs=tuple(TensorMeta(n, t, s) for n, (t, s) in model.outputs.items()),
    )


def _typical_shapes(handle: Any) -> dict[str, tuple[int, ...]]:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*has a dynamic dimension")
            example = handle.example_inputs(1)
    except Exception:  # a model without example inputs still exports; warm-up guesses sizes
        return {}
    return {name: tuple(int(d) for d in array.shape) for name, array in example.items()}


def _check_cascade(small: ModelFile, large: ModelFile) -> None:
    def per_row(meta: TensorMeta) -> int | None:
        dims = meta.shape[1:]
        return None if any(d < 0 for d in dims) else math.prod(dims)

    pairs = [
        *zip(small.inputs, large.inputs, strict=False),  # the counts are compared next
        *zip(small.outputs, large.outputs, strict=False),
    ]
    same_count = len(small.inputs) == len(large.inputs) and len(small.outputs) == len(large.outputs)
    if not same_count or any(
        a.datatype != b.datatype or per_row(a) != per_row(b) for a, b in pairs
    ):
        raise ConfigError(
            f"cascade models must take and give the same tensors (same types and values per row): "
            f"small {small.name} {_show(small)}, large {large.name} {_show(large)}"
        )


def _show(m: ModelFile) -> str:
    ins = ", ".join(f"{t.name}{list(t.shape)} {t.datatype}" for t in m.inputs)
    outs = ", ".join(f"{t.name}{list(t.shape)} {t.datatype}" for t in m.outputs)
    return f"({ins}) -> ({outs})"


def _scores_kind(handle: Any) -> str:
    return str(handle.metadata.get("scores", "logits"))


def _safe_name(value: str) -> str:
    text = "".join(c if c.isalnum() or c in "-_." else "-" for c in str(value)).strip("-.")
    if not text:
        raise ConfigError(f"name {value!r} has no letters or digits; pass name='my-model'")
    return text


# -- the manifest --------------------------------------------------------------------------


def _manifest(folder: Path, handles: dict[str, Any], s: _Settings) -> Manifest:
    """Copy the models into ``folder/models`` and describe the bundle; a bad setting raises
    :class:`ConfigError` naming it, checked by the runtime's own rules too."""
    models = _copy_models(folder, handles)
    cascade = None
    if s.model_figures:  # each cascade model carries its own figures, priced like the bundle
        models = [replace(mf, profile=_priced(s, s.model_figures[mf.role])) for mf in models]
    if s.threshold is not None:
        cascade = Cascade(
            small=handles["small"].name,
            large=handles["large"].name,
            threshold=s.threshold,
            confidence=s.confidence,
            output=models[0].outputs[0].name,
            scores=_scores_kind(handles["small"]),
        )
        _check_cascade(models[0], models[1])
    batching = _section(Batching, s.batching, "batching", flag="enabled")
    threads = _section(Threads, s.threads, "threads", number="threads")
    cost = _cost(
        s.figures, s.monthly_budget_usd, s.instance_usd_per_h, s.usd_per_million, s.utilisation
    )
    scaling = _section(Scaling, s.scaling, "scaling", base=default_scaling(batching, threads, cost))
    manifest = Manifest(
        name=s.name,
        version=s.version,
        models=tuple(models),
        batching=batching,
        threads=threads,
        cache=_section(Cache, s.cache, "cache", flag="enabled"),
        cascade=cascade,
        scaling=scaling,
        slo=Slo(p99_ms=_positive_or_none("slo_p99_ms", s.slo_p99_ms)),
        cost=cost,
        profile=s.figures,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        created_by="inference-workbench",
        energy=energy_section(),
    )
    try:  # the runtime's own rules, so a bad setting is named before anything is written
        parse_manifest(json.loads(json.dumps(manifest.to_dict())))  # tuples to lists
    except BundleError as exc:
        raise ConfigError(f"export settings refused: {exc}") from exc
    return manifest


def energy_section() -> Energy:
    """This machine's CPU, logical cores and TDP (the TDP table of
    :func:`workbench.energy.estimate.cpu_tdp`): what the runtime's live meter estimates CPU
    energy from where no RAPL counter exists."""
    from workbench.energy.estimate import cpu_tdp, detect_cpu_model

    model = detect_cpu_model()
    cores = os.cpu_count() or 1
    watts, source = cpu_tdp(model, cores)
    return Energy(cpu_tdp_w=watts, cpu_model=model, logical_cores=cores, tdp_source=source)


def _copy_models(folder: Path, handles: dict[str, Any]) -> list[ModelFile]:
    models = []
    for role, handle in handles.items():
        rel = f"models/{_safe_name(handle.name)}.onnx"
        (folder / "models").mkdir(exist_ok=True)
        shutil.copyfile(handle.onnx(), folder / rel)
        models.append(_model_file(folder / rel, rel, role, handle))
    return models


# -- files ---------------------------------------------------------------------------------


def _write_bundle(out: Path, handles: dict[str, Any], s: _Settings, tar: bool) -> BundleInfo:
    """Write the bundle (and its archive) under temporary names next to ``out``, verify it, then
    rename it into place; on failure remove whatever was written."""
    tmp = tmp_archive = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        manifest = _manifest(tmp, handles, s)
        checksums = _write_files(tmp, manifest)
        archive = out.with_name(out.name + ".tar.gz") if tar else None
        if archive is not None:
            tmp_archive = _write_tar(tmp, out.name, archive.with_name(f".{archive.name}.tmp"))
        _move_into_place(tmp, out)
        if archive is not None:
            os.replace(tmp_archive, archive)
    except OSError as exc:  # disk full, file size limit, permissions: say so in one line
        _remove(tmp, tmp_archive)
        where = exc.filename2 or exc.filename or out  # copies: filename2 is the target
        raise ExportError(
            f"cannot write the bundle to {out}: {exc.strerror or exc} ({where}); free some disk "
            "space or choose another OUT_DIR (nothing was left behind)"
        ) from exc
    except BaseException:
        _remove(tmp, tmp_archive)
        raise
    return BundleInfo(path=out, manifest=manifest, checksums=checksums, archive=archive)


def _remove(tmp: Path | None, tmp_archive: Path | None) -> None:
    """Delete what a failed export wrote under temporary names."""
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    if tmp_archive is not None:
        tmp_archive.unlink(missing_ok=True)


def _write_files(folder: Path, m: Manifest) -> dict[str, str]:
    """Everything but the models (already copied), then ``SHA256SUMS``; returns the checksums
    once the runtime's own loader has verified the folder."""
    _write_json(folder / MANIFEST, m.to_dict())
    copy_runtime(folder)
    _write_deploy_files(folder, m)
    checksums = write_checksums(folder)
    try:
        load_bundle(folder)  # the runtime's own verification, before the bundle is visible
    except BundleError as exc:  # pragma: no cover - a bug in the exporter
        raise ConfigError(f"the exported bundle does not verify: {exc}") from exc
    return checksums


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _write_deploy_files(folder: Path, m: Manifest) -> None:
    (folder / "Dockerfile").write_text(dockerfile(m), encoding="utf-8")
    (folder / ".dockerignore").write_text(DOCKERIGNORE, encoding="utf-8")
    kube = folder / "deploy" / "kubernetes"
    kube.mkdir(parents=True)
    model_bytes = sum((folder / mf.file).stat().st_size for mf in m.models)
    for file_name, doc in kubernetes_manifests(m, model_bytes).items():
        _write_yaml(kube / file_name, doc)
    prom = folder / "deploy" / "prometheus"
    prom.mkdir(parents=True)
    (prom / "alerts.yaml").write_text(alert_rules_yaml(m), encoding="utf-8")
    ray = folder / "deploy" / "ray"
    ray.mkdir(parents=True)
    _write_yaml(ray / "serve.yaml", ray_serve_config(m))
    (folder / "README.md").write_text(readme(m), encoding="utf-8")


class _PlainDumper(yaml.SafeDumper):
    """Writes a value shared by two keys twice, never as a YAML anchor and alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _write_yaml(path: Path, doc: Any) -> None:
    text = yaml.dump(doc, Dumper=_PlainDumper, sort_keys=False)
    path.write_text(text, encoding="utf-8")


def readme(m: Manifest) -> str:
    """The bundle's README.md: what it holds and how to run, build and deploy it."""
    roles = ", ".join(f"{mf.role}: {mf.file}" for mf in m.models)
    return f"""\
# {m.name} (version {m.version}): serving bundle

Models ({roles}); manifest.json says how they are served; SHA256SUMS lists every file's
sha256 (the runtime refuses a bundle whose files do not match). No pickles.

    python -m venv .venv && .venv/bin/pip install -r requirements.txt
    .venv/bin/python -m serving . --port {PORT}        # binds 127.0.0.1; SERVING_TOKEN=... for auth
    curl -s 127.0.0.1:{PORT}/v2/models/{m.name}

Docker: `docker build -t {m.name}:{m.version} .`, then
`docker run -p {PORT}:{PORT} {m.name}:{m.version}`.
Kubernetes: push the image, replace REGISTRY in deploy/kubernetes/*.yaml, `kubectl apply -f
deploy/kubernetes/` (inferenceservice.yaml is for KServe instead of the Deployment and Service).
Prometheus: load deploy/prometheus/alerts.yaml as a rule file. Ray Serve: `serve run
deploy/ray/serve.yaml` from this folder.
"""


def _move_into_place(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.rename(tmp, out)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.rename(out, old)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _write_tar(folder: Path, name: str, tmp: Path) -> Path:
    """Write ``folder`` as ``name/...`` to the archive ``tmp`` (renamed into place by the caller;
    a partial archive is deleted by the caller too)."""
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for path in sorted(folder.rglob("*")):
                if "__pycache__" in path.parts:
                    continue
                tar.add(
                    path,
                    arcname=f"{name}/{path.relative_to(folder).as_posix()}",
                    recursive=False,
                )
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(tmp)  # gzip's write errors do not say which file
        raise
    return tmp
