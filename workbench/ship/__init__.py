"""Shipping: export a serving bundle (ONNX model, manifest, checksums, the runtime, Dockerfile,
Kubernetes/KServe, Prometheus alerts, Ray Serve) that ``python -m serving BUNDLE`` runs.

Example
-------
>>> from workbench.ship import export
>>> info = export("digits-mlp", "bundles/digits")           # doctest: +SKIP
"""

from workbench.ship.bundle import BundleInfo, export

__all__ = ["BundleInfo", "export"]
