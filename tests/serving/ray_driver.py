"""A Ray Serve driver for the tests, run as a subprocess so that Ray's environment, signal handlers
and logging never touch the pytest process.

``python ray_driver.py BUNDLE PORT TEMP_DIR [NUM_CPUS]``: starts a local Ray instance on loopback,
deploys ``serving.ray_app:app_builder`` for BUNDLE with its HTTP proxy on 127.0.0.1:PORT, prints one
line ``RAY_DRIVER {json}`` (driver pid, the deployment config as Serve's controller holds it) and
waits for a line on stdin; then ``serve.shutdown()``, ``ray.shutdown()`` and ``RAY_DRIVER
{"stopped": ...}``. The caller must set the environment (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, ...)
before this starts: Ray reads it at import.
"""

from __future__ import annotations

import json
import os
import sys
import time

import psutil

MARK = "RAY_DRIVER "


def say(doc: dict) -> None:
    print(MARK + json.dumps(doc), flush=True)


def main() -> int:
    bundle, port, temp_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    num_cpus = float(sys.argv[4]) if len(sys.argv) > 4 else 0.25
    if os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        raise SystemExit("set RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 first: it keeps Ray on loopback")
    started = time.perf_counter()
    import ray
    from ray import serve

    from serving.ray_app import app_builder

    for attempt in (1, 2):
        try:
            ray.init(
                num_cpus=2,
                include_dashboard=False,
                _temp_dir=temp_dir,
                log_to_driver=False,
                configure_logging=False,
            )
            break
        except Exception as exc:
            # Ray 2.60's raylet waits a fixed 15 s for the dashboard agent's port files and the
            # driver a fixed 30 s for the raylet: a loaded machine can miss either. The second
            # try finds the agent's imports in the page cache.
            if attempt == 2 or "timed out during startup" not in str(exc):
                raise
            print(f"ray.init failed ({exc}); once more", file=sys.stderr, flush=True)
            ray.shutdown()
            left = psutil.Process().children(recursive=True)  # what the try left running
            for child in left:
                child.kill()
            psutil.wait_procs(left, timeout=10)
    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": "127.0.0.1", "port": port},
        logging_config={"enable_access_log": False},
    )
    app = app_builder({"bundles": [bundle], "num_cpus": num_cpus})
    serve.run(app, name="bundle", route_prefix="/")
    ready_s = time.perf_counter() - started
    from ray.serve.context import _get_global_client

    details = _get_global_client().get_serve_details()
    deployments = details["applications"]["bundle"]["deployments"]
    say(
        {
            "pid": os.getpid(),
            "ready_s": round(ready_s, 2),
            "node_ip": ray.util.get_node_ip_address(),
            "deployments": {
                name: {
                    "deployment_config": d["deployment_config"],
                    "replicas": len(d.get("replicas", [])),
                }
                for name, d in deployments.items()
            },
        }
    )
    sys.stdin.readline()
    stopping = time.perf_counter()
    serve.shutdown()
    ray.shutdown()
    say({"stopped": True, "shutdown_s": round(time.perf_counter() - stopping, 2)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
