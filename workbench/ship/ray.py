"""The bundle's Ray Serve config (``deploy/ray/serve.yaml``): ``serve run`` it from the bundle
folder; the replicas' settings come from the manifest at start (:mod:`serving.ray_app`).

Example
-------
>>> from serving.manifest import Manifest
>>> ray_serve_config(Manifest(name="digits-mlp", models=()))["applications"][0]["import_path"]
'serving.ray_app:app_builder'
"""

from __future__ import annotations

from typing import Any

from serving.manifest import Manifest


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
