"""Ray Serve entrypoint: the same V2 app (``serving.app.ServingApp``), one copy per replica.

Ray is imported only when :func:`app_builder` runs, so the runtime never needs it otherwise.
From a bundle folder, with ``ray[serve]`` installed::

    serve run deploy/ray/serve.yaml          # or: serve run serving.ray_app:app_builder bundles=.

Replica settings come from the first bundle's manifest (:func:`replica_options`): autoscaling
between ``scaling.min_replicas`` and ``scaling.max_replicas`` on ``scaling.target_ongoing_requests``
requests in flight per replica, ``scaling.max_ongoing_requests`` per replica, CPUs per replica
(``threads.threads`` x ``threads.instances``, summed over the bundles), and no per-request access
log (it costs about 10 % throughput). ``args`` may override ``num_cpus``,
``max_ongoing_requests``, ``autoscaling_config`` (merged into the manifest's) or set a fixed
``num_replicas``.

A replica reports itself started only once its models are warmed up (the app's ASGI lifespan), so
Ray never routes a request to a cold replica. The bearer token is read on each replica from
``SERVING_TOKEN`` (or ``args["token"]``, which Ray stores with the application config).

Example
-------
>>> from serving.ray_app import app_builder            # doctest: +SKIP
>>> serve.run(app_builder({"bundles": ["."]}), route_prefix="/")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from serving.manifest import load_bundle

#: Keys of ``args`` that :func:`app_builder` understands.
ARGS = (
    "bundles",
    "token",
    "num_cpus",
    "num_replicas",
    "max_ongoing_requests",
    "autoscaling_config",
)


def replica_options(args: dict[str, Any]) -> dict[str, Any]:
    """Deployment options for the bundles in ``args["bundles"]`` (pure: no Ray needed).

    Example
    -------
    >>> replica_options({"bundles": ["."]})["autoscaling_config"]  # doctest: +SKIP
    {'min_replicas': 1, 'max_replicas': 4, 'target_ongoing_requests': 32.0}
    """
    unknown = sorted(set(args) - set(ARGS))
    if unknown:
        raise ValueError(f"unknown Ray Serve app argument {unknown[0]!r}; arguments: {ARGS}")
    manifests = [load_bundle(p).manifest for p in _bundles(args)]
    scaling = manifests[0].scaling
    cpus = sum(m.threads.threads * m.threads.instances for m in manifests)
    options: dict[str, Any] = {
        "name": manifests[0].name,
        "ray_actor_options": {"num_cpus": float(args.get("num_cpus", cpus))},
        "max_ongoing_requests": int(args.get("max_ongoing_requests", scaling.max_ongoing_requests)),
        "logging_config": {"enable_access_log": False},
    }
    if "num_replicas" in args:
        options["num_replicas"] = int(args["num_replicas"])
    else:
        options["autoscaling_config"] = {
            "min_replicas": scaling.min_replicas,
            "max_replicas": scaling.max_replicas,
            "target_ongoing_requests": scaling.target_ongoing_requests,
            **dict(args.get("autoscaling_config") or {}),
        }
    return options


def app_builder(args: dict[str, Any]) -> Any:
    """A Ray Serve application serving ``args["bundles"]`` (default: the current folder)."""
    from ray import serve

    bundles = _bundles(args)
    options = replica_options({**args, "bundles": bundles})
    token_arg = args.get("token")
    no_live_meter = bool(args.get("no_live_meter", False))
    meter_interval_s = float(args.get("meter_interval_s", 1.0))

    def build_asgi_app() -> Any:  # runs on each replica
        from serving.app import ServingApp
        from serving.endpoint import Endpoint
        from serving.live_energy import LiveMeter
        from serving.metrics import ServingMetrics

        metrics = ServingMetrics()
        endpoints = [Endpoint(load_bundle(p), metrics) for p in bundles]
        token = token_arg or os.environ.get("SERVING_TOKEN") or None
        meter = None
        if not no_live_meter:  # each replica meters itself, as python -m serving does
            meter = LiveMeter.for_endpoints(endpoints, metrics, interval_s=meter_interval_s)
        return ServingApp(endpoints, token=token, metrics=metrics, live_meter=meter)

    deployment = serve.deployment(serve.ingress(build_asgi_app)())
    return deployment.options(**options).bind()


def _bundles(args: dict[str, Any]) -> list[str]:
    bundles = args.get("bundles", ["."])
    if isinstance(bundles, str):  # `serve run ... bundles=.` passes one string
        bundles = bundles.split(",")
    return [str(Path(p).resolve()) for p in bundles]
