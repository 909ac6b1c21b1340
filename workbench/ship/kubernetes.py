"""The bundle's Kubernetes files (``deploy/kubernetes/``: Deployment, Service,
HorizontalPodAutoscaler, KServe InferenceService) and the replica settings they share with Ray
Serve (:func:`default_scaling`, the manifest's ``scaling`` section when the user sets none).

Both are pure: manifest in, documents out (``export`` writes them as YAML). docs/kubernetes.md
shows the files for the demo bundle and walks through deploying them.

Example
-------
>>> from serving.manifest import Batching, Cost, Manifest, Threads
>>> scaling = default_scaling(Batching(), Threads(), Cost())
>>> docs = kubernetes_manifests(Manifest(name="digits-mlp", models=(), scaling=scaling))
>>> sorted(docs), docs["hpa.yaml"]["spec"]["maxReplicas"]
(['deployment.yaml', 'hpa.yaml', 'inferenceservice.yaml', 'service.yaml'], 4)
"""

from __future__ import annotations

import math
from typing import Any

from serving.manifest import Batching, Cost, Manifest, Scaling, Threads
from workbench.ship.docker import PORT
from workbench.units import HOURS_PER_MONTH


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
    """Deployment, Service, HorizontalPodAutoscaler and KServe InferenceService, by file name;
    ``model_bytes`` (the bundle's model files) sizes the memory request."""
    labels = {"app.kubernetes.io/name": m.name, "app.kubernetes.io/version": m.version}
    container = _container(m, model_bytes)
    return {
        "deployment.yaml": _deployment(m, labels, container),
        "service.yaml": _service(m, labels),
        "hpa.yaml": _autoscaler(m, labels),
        "inferenceservice.yaml": _inference_service(m, labels, container),
    }


def _container(m: Manifest, model_bytes: int) -> dict[str, Any]:
    """The server's container: image, port, token, probes, resources, a locked-down context."""
    cpus = m.threads.threads * m.threads.instances
    # ONNX Runtime holds about 2-3x the file in memory per session; 256 MiB for Python and the rest.
    memory_mi = 256 + math.ceil(3 * model_bytes * m.threads.instances / 2**20)
    return {
        "name": "serving",
        "image": f"REGISTRY/{m.name}:{m.version}",
        "ports": [{"name": "http", "containerPort": PORT}],
        "env": [
            {
                "name": "SERVING_TOKEN",
                "valueFrom": {
                    "secretKeyRef": {"name": f"{m.name}-token", "key": "token", "optional": True}
                },
            }
        ],
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "periodSeconds": 5,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 10,
            "initialDelaySeconds": 10,
        },
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


def _deployment(m: Manifest, labels: dict[str, str], container: dict[str, Any]) -> dict[str, Any]:
    scrape = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORT),
        "prometheus.io/path": "/metrics",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": m.name, "labels": labels},
        "spec": {
            "replicas": m.scaling.min_replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": m.name}},
            "template": {
                "metadata": {"labels": labels, "annotations": scrape},
                "spec": {
                    # the server finishes accepted requests within --grace-s (30 s) after SIGTERM
                    "terminationGracePeriodSeconds": 40,
                    "containers": [container],
                },
            },
        },
    }


def _service(m: Manifest, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": m.name, "labels": labels},
        "spec": {
            "selector": {"app.kubernetes.io/name": m.name},
            "ports": [{"name": "http", "port": PORT, "targetPort": "http"}],
        },
    }


def _autoscaler(m: Manifest, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": m.name, "labels": labels},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": m.name},
            "minReplicas": m.scaling.min_replicas,
            "maxReplicas": m.scaling.max_replicas,
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


def _inference_service(
    m: Manifest, labels: dict[str, str], container: dict[str, Any]
) -> dict[str, Any]:
    scaling = m.scaling
    return {
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
