"""Shipping: export a serving bundle (ONNX model, manifest, checksums, the runtime, Dockerfile,
Kubernetes/KServe, Prometheus alerts, Ray Serve) that ``python -m serving BUNDLE`` runs.

- :mod:`~workbench.ship.bundle`: ``export(model, out_dir, ...)``, the manifest and the files.
- :mod:`~workbench.ship.docker`: the Dockerfile and the runtime copied into the bundle.
- :mod:`~workbench.ship.kubernetes`: Deployment, Service, HPA, KServe; ``default_scaling``.
- :mod:`~workbench.ship.alerts`: Prometheus alert rules (SLO, budget, overload, live J/prediction
  and cost per 1M drift).
- :mod:`~workbench.ship.ray`: the Ray Serve config.

Example
-------
>>> from workbench.ship import export
>>> info = export("digits-mlp", "bundles/digits")           # doctest: +SKIP
"""

from workbench.ship.alerts import alert_rules
from workbench.ship.bundle import BundleInfo, export
from workbench.ship.docker import dockerfile
from workbench.ship.kubernetes import default_scaling, kubernetes_manifests
from workbench.ship.ray import ray_serve_config

__all__ = [
    "BundleInfo",
    "alert_rules",
    "default_scaling",
    "dockerfile",
    "export",
    "kubernetes_manifests",
    "ray_serve_config",
]
