"""The bundle's Ray Serve entrypoint on a real local Ray instance kept on loopback.

One Ray instance for the module, started by ``ray_driver.py`` in a subprocess (Ray reads its
environment at import, and its signal handlers and logging stay out of pytest). It deploys
``serving.ray_app:app_builder`` for an exported bundle, with the Serve HTTP proxy on
127.0.0.1:<free port>; the tests send V2 requests to it and to ``python -m serving`` on the same
bundle and compare the answers element-wise, and check that the deployment's autoscaling config
and ``max_ongoing_requests``, as Serve's controller holds them, are the manifest's.

What the loopback check covers: a thread lists every socket of the Ray process tree (the driver
and all its descendants: GCS, raylet, dashboard helpers, the Serve controller, proxy and replicas)
with psutil every 0.5 s from before the deployment until the test module ends, plus a final
snapshot. It fails if any socket has a remote address that is not loopback, or if any socket other
than a Serve replica's inter-deployment gRPC server *listens* on a non-loopback address. That
server is bound to ``[::]:0`` by Ray itself (``ray/serve/_private/replica.py``: no option changes
it), so it listens on all interfaces; it is recorded and allowed, and nothing connects to it from
outside loopback during the test (which the remote-address check covers). Sampling can miss a
connection that opens and closes between two samples; it cannot see traffic of processes outside
the tree (there are none: every Ray process here descends from the driver, checked at teardown).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest
from serving_helpers import REPO, Server, export_bundle, serving

from serving.manifest import load_bundle

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="ray[serve] is not installed (pip install 'inference-workbench[scale]')",
)

DRIVER = Path(__file__).with_name("ray_driver.py")
TOKEN = "ray-test-token"
READY_TIMEOUT_S = 180
SCALING = {
    "min_replicas": 1,
    "max_replicas": 2,
    "target_ongoing_requests": 3.0,
    "max_ongoing_requests": 16,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class SocketWatch:
    """Samples the sockets of a process tree in a background thread."""

    def __init__(self, root_pid: int, interval_s: float = 0.5) -> None:
        self.root = psutil.Process(root_pid)
        self.interval_s = interval_s
        self.seen: dict[tuple, str] = {}  # (pid, status, laddr, raddr) -> process name
        self.processes: dict[int, tuple[float, str]] = {}  # pid -> (create_time, name)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def sample(self) -> None:
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        for proc in procs:
            try:
                name = " ".join(proc.cmdline()).strip()[:60] or proc.name()
                self.processes.setdefault(proc.pid, (proc.create_time(), name))
                for c in proc.net_connections(kind="inet"):
                    raddr = (c.raddr.ip, c.raddr.port) if c.raddr else None
                    self.seen[(proc.pid, c.status, (c.laddr.ip, c.laddr.port), raddr)] = name
            except psutil.Error:
                continue
        self.samples += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


class RayServe:
    """The driver subprocess: its HTTP proxy as a :class:`Server`, the deployment details."""

    def __init__(self, proc: subprocess.Popen, port: int, info: dict, watch: SocketWatch):
        self.proc, self.port, self.info, self.watch = proc, port, info, watch
        self.http = Server(proc, Path(os.devnull), port)


def _read_mark(proc: subprocess.Popen, timeout_s: float, log: Path) -> dict:
    found: list[dict] = []

    def reader() -> None:
        for line in proc.stdout:
            if line.startswith("RAY_DRIVER "):
                found.append(json.loads(line[len("RAY_DRIVER ") :]))
                return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not found:
        try:  # it may be exiting: let it finish writing its traceback
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        tail = log.read_text(errors="replace")[-3000:]
        pytest.fail(f"Ray driver exited ({proc.poll()}) or gave no answer in {timeout_s} s: {tail}")
    return found[0]


@pytest.fixture(scope="module")
def bundle(models_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ray-bundle") / "lin"
    return export_bundle(models_dir / "lin.onnx", out, name="lin", scaling=SCALING)


@pytest.fixture(scope="module")
def single(bundle, tmp_path_factory):
    log = tmp_path_factory.mktemp("single") / "server.log"
    env = dict(os.environ, PYTHONPATH=str(REPO), SERVING_TOKEN=TOKEN)
    with serving([bundle], log, env=env) as server:
        yield server


@pytest.fixture(scope="module")
def ray_serve(bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    (root / "home").mkdir()
    env = dict(
        os.environ,
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # keeps the node address (and traffic) on loopback
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="disabled",
        HOME=str(root / "home"),  # nothing written to the user's ~/.ray
        PYTHONPATH=str(REPO),
        SERVING_TOKEN=TOKEN,  # read on each replica, never stored in the application config
    )
    port = _free_port()
    log = root / "driver.log"
    temp_dir = tmp_path_factory.mktemp("r")
    if len(str(temp_dir)) > 48:  # Ray's unix socket paths under it must stay within 107 bytes
        temp_dir = Path(tempfile.mkdtemp(prefix="ray-"))
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(DRIVER), str(bundle), str(port), str(temp_dir), "0.25"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            cwd=root,
            text=True,
        )
    watch = SocketWatch(proc.pid)
    try:
        info = _read_mark(proc, READY_TIMEOUT_S, log)
        yield RayServe(proc, port, info, watch)
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        stopped = _read_mark(proc, 60, log)
        assert stopped["stopped"], stopped
        print(f"Ray Serve ready in {info['ready_s']} s, shut down in {stopped['shutdown_s']} s")
        assert proc.wait(30) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        watch.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(temp_dir, ignore_errors=True)
    time.sleep(1)  # processes reparented to init finish exiting
    left = []
    for pid, (created, name) in watch.processes.items():
        try:
            if psutil.Process(pid).create_time() == created:
                left.append(f"{pid} {name}")
        except psutil.NoSuchProcess:
            continue
    assert not left, f"Ray processes left after serve.shutdown() and ray.shutdown(): {left}"


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def test_the_deployment_takes_replicas_and_autoscaling_from_the_manifest(ray_serve, bundle):
    scaling = load_bundle(bundle).manifest.scaling
    assert ray_serve.info["node_ip"] == "127.0.0.1"
    config = ray_serve.info["deployments"]["lin"]["deployment_config"]
    auto = config["autoscaling_config"]
    assert auto["min_replicas"] == scaling.min_replicas == SCALING["min_replicas"]
    assert auto["max_replicas"] == scaling.max_replicas == SCALING["max_replicas"]
    assert auto["target_ongoing_requests"] == scaling.target_ongoing_requests == 3.0
    assert config["max_ongoing_requests"] == scaling.max_ongoing_requests == 16
    assert config["ray_actor_options"]["num_cpus"] == 0.25
    assert ray_serve.info["deployments"]["lin"]["replicas"] >= 1


def test_v2_answers_equal_the_single_process_runtime(ray_serve, single):
    rng = np.random.default_rng(7)
    for rows in (1, 3, 17):
        x = rng.standard_normal((rows, 8)).astype(np.float32)
        status_r, _, doc_r = _infer(ray_serve.http, x)
        status_s, _, doc_s = _infer(single, x)
        assert status_r == status_s == 200, (doc_r, doc_s)
        out_r, out_s = doc_r["outputs"][0], doc_s["outputs"][0]
        assert out_r["shape"] == out_s["shape"] == [rows, 4]
        np.testing.assert_array_equal(
            np.array(out_r["data"], np.float32), np.array(out_s["data"], np.float32)
        )
        assert doc_r["model_name"] == doc_s["model_name"] == "lin"
    for path in ("/v2/models/lin", "/v2/models/lin/ready", "/v2/health/ready", "/v2"):
        r, s = (
            ray_serve.http.request("GET", path, headers=_auth()),
            single.request("GET", path, headers=_auth()),
        )
        assert (r[0], json.loads(r[2])) == (s[0], json.loads(s[2])), path


def test_errors_and_auth_are_the_same_through_ray(ray_serve, single):
    bad = json.dumps(
        {"inputs": [{"name": "nope", "shape": [1, 8], "datatype": "FP32", "data": [0.0] * 8}]}
    ).encode()
    for headers in (_auth(), {}):
        r = ray_serve.http.request("POST", "/v2/models/lin/infer", bad, headers)
        s = single.request("POST", "/v2/models/lin/infer", bad, headers)
        assert r[0] == s[0] and r[0] in (400, 401)
        assert json.loads(r[2]) == json.loads(s[2])
    assert ray_serve.http.request("GET", "/v2/models/lin")[0] == 401  # token read on the replica


def test_concurrent_requests_through_the_proxy_all_answer(ray_serve, single):
    rng = np.random.default_rng(11)
    xs = [rng.standard_normal((2, 8)).astype(np.float32) for _ in range(24)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda x: _infer(ray_serve.http, x), xs))
    for x, (status, _, doc) in zip(xs, answers):
        assert status == 200, doc
        want = _infer(single, x)[2]["outputs"][0]["data"]
        np.testing.assert_array_equal(
            np.array(doc["outputs"][0]["data"], np.float32), np.array(want, np.float32)
        )


def test_each_replica_meters_its_own_energy(ray_serve):
    """The Ray entrypoint builds its app with the live meter, as ``python -m serving`` does."""
    x = np.ones((2, 8), np.float32)
    assert _infer(ray_serve.http, x)[0] == 200
    status, _, body = ray_serve.http.request("GET", "/metrics", headers=_auth())
    text = body.decode()
    assert status == 200, text
    assert "serving_live_meter_info{" in text
    assert "serving_live_energy_joules_total{" in text


def test_every_ray_connection_stays_on_loopback(ray_serve):
    """Last in the module, so the samples cover start-up and all the requests above."""
    watch = ray_serve.watch
    watch.sample()
    assert watch.samples >= 5 and len(watch.processes) >= 5, (watch.samples, watch.processes)
    remote = [
        (pid, name, laddr, raddr)
        for (pid, _, laddr, raddr), name in watch.seen.items()
        if raddr is not None and not (_loopback(raddr[0]) and _loopback(laddr[0]))
    ]
    assert not remote, f"Ray connections off loopback: {remote}"
    listening_wide = sorted(
        {
            (name, laddr)
            for (_, status, laddr, _), name in watch.seen.items()
            if status == psutil.CONN_LISTEN and not _loopback(laddr[0])
        }
    )
    print(f"listening on all interfaces (Ray's replica gRPC server): {listening_wide}")
    assert all(name.startswith("ray::ServeReplica") for name, _ in listening_wide), listening_wide
    proxy = [
        laddr
        for (_, status, laddr, _), _ in watch.seen.items()
        if status == psutil.CONN_LISTEN and laddr[1] == ray_serve.port
    ]
    assert proxy and all(ip == "127.0.0.1" for ip, _ in proxy), proxy


def _infer(server: Server, x: np.ndarray) -> tuple[int, dict, dict]:
    body = {
        "inputs": [
            {
                "name": "input",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ]
    }
    status, headers, raw = server.request(
        "POST",
        "/v2/models/lin/infer",
        json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **_auth()},
    )
    return status, headers, json.loads(raw)

