"""Ray Serve entrypoint: the same ASGI app, one copy per Ray Serve replica.

Ray is imported only when :func:`app_builder` runs, so the runtime never needs it otherwise.
From a bundle folder, with ``ray[serve]`` installed::

    serve run deploy/ray/serve.yaml          # or: serve run serving.ray_app:app_builder bundles=.

Replica settings come from the first bundle's manifest: CPUs per replica (intra-op threads x
instances), ``max_ongoing_requests`` (enough to fill the queue the manifest allows), and no
per-request access log (it costs about 10 % throughput). ``args`` may override ``num_replicas``,
``autoscaling_config``, ``num_cpus`` and ``max_ongoing_requests``.

Example
-------
>>> from serving.ray_app import app_builder            # doctest: +SKIP
>>> serve.run(app_builder({"bundles": ["."]}))          # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from serving.manifest import load_bundle


def replica_options(args: dict[str, Any]) -> dict[str, Any]:
    """Deployment options for the bundles in ``args["bundles"]`` (pure: no Ray needed)."""
    bundles = [str(Path(p).resolve()) for p in args.get("bundles", ["."])]
    manifest = load_bundle(bundles[0]).manifest
    threads, batching = manifest.threads, manifest.batching
    options: dict[str, Any] = {
        "name": manifest.name,
        "ray_actor_options": {
            "num_cpus": args.get("num_cpus", threads.intra_op * threads.instances)
        },
        "max_ongoing_requests": int(
            args.get(
                "max_ongoing_requests",
                max(8, min(batching.max_queue_rows, 4 * batching.max_batch_rows)),
            )
        ),
        "logging_config": {"enable_access_log": False},
    }
    if "autoscaling_config" in args:
        options["autoscaling_config"] = args["autoscaling_config"]
    else:
        options["num_replicas"] = int(args.get("num_replicas", 1))
    return options


def app_builder(args: dict[str, Any]) -> Any:
    """A Ray Serve application serving ``args["bundles"]`` (default: the current folder)."""
    from ray import serve

    bundles = [str(Path(p).resolve()) for p in args.get("bundles", ["."])]
    token = args.get("token") or os.environ.get("SERVING_TOKEN")

    def build_asgi_app() -> Any:  # runs on each replica
        from serving.app import ServingApp
        from serving.endpoint import Endpoint
        from serving.metrics import ServingMetrics

        metrics = ServingMetrics()
        endpoints = [Endpoint(load_bundle(p), metrics) for p in bundles]
        return ServingApp(endpoints, token=token, metrics=metrics)

    deployment = serve.deployment(serve.ingress(build_asgi_app)())
    return deployment.options(**replica_options({**args, "bundles": bundles})).bind()
