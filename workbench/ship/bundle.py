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
import sys
import tarfile
import tempfile
import warnings
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

import serving
from serving.manifest import (
    MANIFEST,
    Batching,
    BundleError,
    Cache,
    Cascade,
    Cost,
    Manifest,
    ModelFile,
    Scaling,
    Slo,
    TensorMeta,
    Threads,
    load_bundle,
    parse_manifest,
    write_checksums,
)
from workbench.errors import ConfigError, ExportError, ModelLoadError
from workbench.units import HOURS_PER_MONTH

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
PORT = 8080


@dataclass(frozen=True)
class BundleInfo:
    """A written bundle: its folder, its archive (if asked for), manifest and checksums."""

    path: Path
    manifest: Manifest
    checksums: dict[str, str]
    archive: Path | None = None


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
    threads: intra-op threads (an int), or fields of :class:`serving.manifest.Threads`.
    cache: ``True`` for the default response cache, or fields of :class:`serving.manifest.Cache`.
    cascade: ``(small, large, threshold)``: serve ``small`` and escalate rows whose confidence
        (``confidence``: ``max_softmax`` or ``margin``) is below ``threshold`` to ``large``;
        ``model_or_handle`` may then be ``None`` (or must be ``small``).
    scaling: fields of :class:`serving.manifest.Scaling` (``min_replicas``, ``max_replicas``,
        ``target_ongoing_requests``, ``max_ongoing_requests``) for Ray Serve and Kubernetes;
        unset fields follow from batching, threads and the budget (:func:`default_scaling`).
    slo_p99_ms, monthly_budget_usd: objectives for the alert rules.
    instance_usd_per_h: price of one serving instance; with a profile's measured throughput and
        ``utilisation`` it gives the cost per million predictions (or pass ``usd_per_million``).
    profile: a :class:`workbench.measure.profiling.Profile`, a run id in ``store``, or a dict of figures.
    tar: also write ``OUT_DIR.tar.gz``.
    overwrite: replace an existing ``out_dir``.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} already exists; choose another folder or pass overwrite=True")
    figures = profile_figures(profile, store)
    if cascade is not None:
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
        handles = {"small": small, "large": large}
        bundle_name = name or f"{small.name}-cascade"
    else:
        if model_or_handle is None:
            raise ConfigError(
                "nothing to export: pass a model (or cascade=(small, large, threshold))"
            )
        handles = {"main": load_model(model_or_handle)}
        bundle_name = name or handles["main"].name
    bundle_name = _safe_name(bundle_name)

    tmp = tmp_archive = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        models = []
        for role, handle in handles.items():
            rel = f"models/{_safe_name(handle.name)}.onnx"
            (tmp / "models").mkdir(exist_ok=True)
            shutil.copyfile(handle.onnx(), tmp / rel)
            models.append(_model_file(tmp / rel, rel, role, handle))
        cascade_cfg = None
        if cascade is not None:
            cascade_cfg = Cascade(
                small=handles["small"].name,
                large=handles["large"].name,
                threshold=float(threshold),
                confidence=confidence,
                output=models[0].outputs[0].name,
                scores=_scores_kind(handles["small"]),
            )
            _check_cascade(models[0], models[1])
        batching_cfg = _section(Batching, batching, "batching", flag="enabled")
        threads_cfg = _section(Threads, threads, "threads", number="intra_op")
        cost_cfg = _cost(
            figures, monthly_budget_usd, instance_usd_per_h, usd_per_million, utilisation
        )
        scaling_cfg = _section(
            Scaling, scaling, "scaling", base=default_scaling(batching_cfg, threads_cfg, cost_cfg)
        )
        manifest = Manifest(
            name=bundle_name,
            version=str(version),
            models=tuple(models),
            batching=batching_cfg,
            threads=threads_cfg,
            cache=_section(Cache, cache, "cache", flag="enabled"),
            cascade=cascade_cfg,
            scaling=scaling_cfg,
            slo=Slo(p99_ms=_positive_or_none("slo_p99_ms", slo_p99_ms)),
            cost=cost_cfg,
            profile=figures,
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            created_by="inference-workbench",
        )
        try:  # the runtime's own rules, so a bad setting is named before anything is written
            parse_manifest(json.loads(json.dumps(manifest.to_dict())))  # tuples to lists
        except BundleError as exc:
            raise ConfigError(f"export settings refused: {exc}") from exc
        _write_json(tmp / MANIFEST, manifest.to_dict())
        _copy_runtime(tmp)
        _write_deploy_files(tmp, manifest)
        checksums = write_checksums(tmp)
        try:
            load_bundle(tmp)  # the runtime's own verification, before the bundle is visible
        except BundleError as exc:  # pragma: no cover - a bug in the exporter
            raise ConfigError(f"the exported bundle does not verify: {exc}") from exc
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


# -- inputs --------------------------------------------------------------------------------


def load_model(spec: Any) -> Any:
    """``workbench.models.handle.load_model`` without its warning about example shapes (unused here)."""
    from workbench.models import load_model as load

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*has a dynamic dimension")
        return load(spec)


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
):
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

    pairs = [*zip(small.inputs, large.inputs), *zip(small.outputs, large.outputs)]
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


# -- files ---------------------------------------------------------------------------------


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _copy_runtime(folder: Path) -> None:
    src = Path(serving.__file__).resolve().parent
    dest = folder / "serving"
    dest.mkdir()
    for item in sorted(src.iterdir()):
        if item.is_file() and item.suffix in (".py", ".txt", ".json"):
            shutil.copyfile(item, dest / item.name)
    shutil.copyfile(src / "requirements.txt", folder / "requirements.txt")


def _write_deploy_files(folder: Path, m: Manifest) -> None:
    (folder / "Dockerfile").write_text(dockerfile(m), encoding="utf-8")
    (folder / ".dockerignore").write_text("**/__pycache__\n*.tar.gz\n", encoding="utf-8")
    kube = folder / "deploy" / "kubernetes"
    kube.mkdir(parents=True)
    model_bytes = sum((folder / mf.file).stat().st_size for mf in m.models)
    for file_name, doc in kubernetes_manifests(m, model_bytes).items():
        _write_yaml(kube / file_name, doc)
    prom = folder / "deploy" / "prometheus"
    prom.mkdir(parents=True)
    _write_yaml(prom / "alerts.yaml", alert_rules(m))
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


def dockerfile(m: Manifest) -> str:
    """A small image: python slim, the pinned requirements, the bundle, a non-root user."""
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    return f"""\
# docker build -t {m.name}:{m.version} .   then   docker run -p {PORT}:{PORT} {m.name}:{m.version}
FROM python:{py}-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /bundle
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN useradd --uid 10001 --no-create-home serving
USER 10001
EXPOSE {PORT}
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; \\
urllib.request.urlopen('http://127.0.0.1:{PORT}/v2/health/ready')"
# Inside a container the server must listen on all interfaces; set SERVING_TOKEN for auth.
ENTRYPOINT ["python", "-m", "serving", "/bundle", "--host", "0.0.0.0", "--port", "{PORT}"]
"""


def default_scaling(batching: Batching, threads: Threads, cost: Cost) -> Scaling:
    """Replica settings that follow from the bundle's other settings (a heuristic, not measured).

    A replica runs ``threads.instances`` model calls at once, each of up to
    ``batching.max_batch_rows`` rows when batching (one row per request in the worst case), so
    more requests in flight than that wait for the next round: that is the autoscaling target.
    A replica takes up to 4 rounds (at least 8, at most the batch queue) before the router holds
    requests back. The most replicas the monthly budget pays for at ``instance_usd_per_h``
    (4 without a budget).

    Example
    -------
    >>> default_scaling(Batching(), Threads(), Cost())
    Scaling(min_replicas=1, max_replicas=4, target_ongoing_requests=32.0, max_ongoing_requests=128)
    """
    per_round = threads.instances * (batching.max_batch_rows if batching.enabled else 1)
    price, budget = cost.instance_usd_per_h, cost.monthly_budget_usd
    most = max(1, math.floor(budget / (price * HOURS_PER_MONTH))) if price and budget else 4
    ongoing = max(per_round, 8, min(batching.max_queue_rows, 4 * per_round))
    return Scaling(
        min_replicas=1,
        max_replicas=most,
        target_ongoing_requests=float(per_round),
        max_ongoing_requests=ongoing,
    )


def kubernetes_manifests(m: Manifest, model_bytes: int = 0) -> dict[str, dict[str, Any]]:
    """Deployment, Service, HorizontalPodAutoscaler and KServe InferenceService."""
    labels = {"app.kubernetes.io/name": m.name, "app.kubernetes.io/version": m.version}
    image = f"REGISTRY/{m.name}:{m.version}"
    cpus = m.threads.intra_op * m.threads.instances
    # ONNX Runtime holds about 2-3x the file in memory per session; 256 MiB for Python and the rest.
    memory_mi = 256 + math.ceil(3 * model_bytes * m.threads.instances / 2**20)
    probes = {
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "periodSeconds": 5,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 10,
            "initialDelaySeconds": 10,
        },
    }
    container = {
        "name": "serving",
        "image": image,
        "ports": [{"name": "http", "containerPort": PORT}],
        "env": [
            {
                "name": "SERVING_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {"name": f"{m.name}-token", "key": "token", "optional": True}
                },
            }
        ],
        **probes,
        "resources": {
            "requests": {"cpu": str(cpus), "memory": f"{memory_mi}Mi"},
            "limits": {"cpu": str(cpus), "memory": f"{2 * memory_mi}Mi"},
        },
        "securityContext": {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
        },
    }
    scrape = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORT),
        "prometheus.io/path": "/metrics",
    }
    scaling = m.scaling
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": m.name, "labels": labels},
        "spec": {
            "replicas": scaling.min_replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": m.name}},
            "template": {
                "metadata": {"labels": labels, "annotations": scrape},
                "spec": {
                    # uvicorn finishes accepted requests within --grace-s (30 s) after SIGTERM
                    "terminationGracePeriodSeconds": 40,
                    "containers": [container],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": m.name, "labels": labels},
        "spec": {
            "selector": {"app.kubernetes.io/name": m.name},
            "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": m.name, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": m.name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            # requests in flight are not a resource metric: without a custom-metrics adapter,
            # the HPA scales on CPU (the manifest's target_ongoing_requests drives KServe and Ray)
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }
    inference_service = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": m.name,
            "labels": labels,
            "annotations": {"serving.kserve.io/enable-prometheus-scraping": "true"},
        },
        "spec": {
            "predictor": {
                "minReplicas": scaling.min_replicas,
                "maxReplicas": scaling.max_replicas,
                # Knative (serverless mode) scales on requests in flight per pod, as Ray Serve
                "scaleMetric": "concurrency",
                "scaleTarget": max(1, math.ceil(scaling.target_ongoing_requests)),
                "containerConcurrency": scaling.max_ongoing_requests,
                "containers": [
                    {
                        **container,
                        "name": "kserve-container",
                        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
                        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": PORT}},
                        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": PORT}},
                    }
                ],
            }
        },
    }
    return {
        "deployment.yaml": deployment,
        "service.yaml": service,
        "hpa.yaml": hpa,
        "inferenceservice.yaml": inference_service,
    }


def alert_rules(m: Manifest) -> dict[str, Any]:
    """Prometheus rules: p99 over the SLO, projected monthly cost over the budget, overload."""
    sel = f'model="{m.name}"'
    title = "".join(part.capitalize() for part in m.name.replace("_", "-").split("-"))
    rules: list[dict[str, Any]] = []
    if m.slo.p99_ms is not None:
        rules.append(
            {
                "alert": f"{title}P99OverSLO",
                "expr": f"histogram_quantile(0.99, sum by (le) (rate(serving_request_seconds_bucket"
                f"{{{sel}}}[5m]))) > {m.slo.p99_ms / 1000:g}",
                "for": "10m",
                "labels": {"severity": "page"},
                "annotations": {
                    "summary": f"{m.name}: p99 latency above the {m.slo.p99_ms:g} ms SLO",
                    "description": "p99 of the server-side request time over 5 minutes "
                    "(from histogram buckets, an estimate).",
                },
            }
        )
    if m.cost.monthly_budget_usd is not None:
        budget = m.cost.monthly_budget_usd
        if m.cost.instance_usd_per_h is not None:
            rules.append(
                {
                    "alert": f"{title}ReplicaCostOverBudget",
                    "expr": f"sum(serving_instance_usd_per_hour{{{sel}}}) * {HOURS_PER_MONTH:.1f} "
                    f"> {budget:g}",
                    "for": "30m",
                    "labels": {"severity": "ticket"},
                    "annotations": {
                        "summary": f"{m.name}: running replicas cost more than the "
                        f"{budget:g} USD monthly budget at this rate"
                    },
                }
            )
        if m.cost.usd_per_million is not None:
            rules.append(
                {
                    "alert": f"{title}PredictionCostOverBudget",
                    "expr": f"sum(rate(serving_cost_usd_total{{{sel}}}[1h])) * 3600 * "
                    f"{HOURS_PER_MONTH:.1f} > {budget:g}",
                    "for": "1h",
                    "labels": {"severity": "ticket"},
                    "annotations": {
                        "summary": f"{m.name}: traffic x cost per prediction projects "
                        f"above the {budget:g} USD monthly budget"
                    },
                }
            )
    rules.append(
        {
            "alert": f"{title}Overloaded",
            "expr": f'sum(rate(serving_failures_total{{{sel},reason="overloaded"}}[5m])) > 0',
            "for": "5m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": f"{m.name}: requests refused with 503 (queue full); scale out"
            },
        }
    )
    return {"groups": [{"name": f"{m.name}-serving", "rules": rules}]}


def ray_serve_config(m: Manifest) -> dict[str, Any]:
    """A ``serve run`` config; run it from the bundle folder."""
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": 8000},
        "applications": [
            {
                "name": m.name,
                "route_prefix": "/",
                "import_path": "serving.ray_app:app_builder",
                "args": {"bundles": ["."]},
            }
        ],
    }


def readme(m: Manifest) -> str:
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
