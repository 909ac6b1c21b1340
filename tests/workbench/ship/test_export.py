"""``export()`` and ``workbench export``: complete, verified, atomic bundles from real models."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

import serving
from serving.manifest import BundleError, load_bundle, unpack_archive, write_checksums
from workbench.errors import ConfigError
from workbench.measure.store import RunStore
from workbench.ship.bundle import export


def _classifier(path: Path, in_shape: tuple[int, ...], classes: int = 3, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    n = int(np.prod(in_shape))
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"]),
            helper.make_node("MatMul", ["flat", "W"], ["output"]),
        ],
        path.stem,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *in_shape])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(rng.standard_normal((n, classes)).astype(np.float32), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory):
    from workbench.measure.profiling import profile

    measured = profile("digits-mlp", iterations=30, max_seconds=2, operators=False, store=False)
    out = tmp_path_factory.mktemp("export") / "digits-mlp"
    info = export(
        "digits-mlp",
        out,
        slo_p99_ms=15,
        monthly_budget_usd=200,
        instance_usd_per_h=0.1,
        profile=measured,
        cache=True,
        threads=1,
        tar=True,
    )
    return info, measured


def test_a_demo_model_bundle_holds_every_part(demo_bundle):
    info = demo_bundle[0]
    root = info.path
    for rel in (
        "models/digits-mlp.onnx",
        "manifest.json",
        "SHA256SUMS",
        "requirements.txt",
        "Dockerfile",
        "README.md",
        "serving/__main__.py",
        "deploy/ray/serve.yaml",
        "deploy/kubernetes/deployment.yaml",
        "deploy/kubernetes/service.yaml",
        "deploy/kubernetes/hpa.yaml",
        "deploy/kubernetes/inferenceservice.yaml",
        "deploy/prometheus/alerts.yaml",
    ):
        assert (root / rel).is_file(), rel
    source = Path(serving.__file__).parent
    for py in source.glob("*.py"):
        assert (root / "serving" / py.name).read_bytes() == py.read_bytes()
    assert (root / "requirements.txt").read_text() == (source / "requirements.txt").read_text()
    onnx.checker.check_model(onnx.load(str(root / "models/digits-mlp.onnx")))
    assert load_bundle(root).manifest.name == "digits-mlp"


def test_the_manifest_records_io_settings_profile_and_cost(demo_bundle):
    info, measured = demo_bundle
    doc = json.loads((info.path / "manifest.json").read_text())
    assert doc["schema_version"] == 1
    assert doc["models"][0]["inputs"] == [
        {"name": "input", "datatype": "FP32", "shape": [-1, 64], "typical_shape": [1, 64]}
    ]
    assert doc["models"][0]["outputs"][0]["shape"] == [-1, 10]
    assert doc["batching"]["enabled"] and doc["cache"]["enabled"] and doc["threads"]["threads"] == 1
    assert doc["slo"] == {"p99_ms": 15.0}
    assert doc["profile"]["latency_ms_p99"] == measured.latency_ms_p99
    assert doc["profile"]["throughput_items_per_s"] == measured.throughput_items_per_s
    per_million = 0.1 / (measured.throughput_items_per_s * 3600 * 0.5) * 1e6
    assert doc["cost"]["usd_per_million"] == pytest.approx(per_million)
    assert doc["cost"]["monthly_budget_usd"] == 200 and doc["cost"]["method"] == "typed in"


def test_checksums_cover_every_file_and_nothing_is_a_pickle(demo_bundle):
    root = demo_bundle[0].path
    listed = {}
    for line in (root / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split("  ", 1)
        listed[rel] = digest
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert set(listed) == files - {"SHA256SUMS"}
    for rel, digest in listed.items():
        data = (root / rel).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest
        assert not (data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))


def test_deployment_files_are_valid_and_carry_the_bundle_settings(demo_bundle):
    root = demo_bundle[0].path
    kube = {p.name: yaml.safe_load(p.read_text()) for p in (root / "deploy/kubernetes").iterdir()}
    kinds = {doc["kind"] for doc in kube.values()}
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler", "InferenceService"}
    container = kube["deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["resources"]["requests"]["cpu"] == "1"
    # 200 USD a month buys floor(200 / (0.1 * 730.5)) = 2 replicas at 0.1 USD/h
    assert kube["hpa.yaml"]["spec"]["maxReplicas"] == 2
    assert kube["inferenceservice.yaml"]["apiVersion"] == "serving.kserve.io/v1beta1"
    rules = yaml.safe_load((root / "deploy/prometheus/alerts.yaml").read_text())
    exprs = {r["alert"]: r["expr"] for r in rules["groups"][0]["rules"]}
    assert "serving_request_seconds_bucket" in exprs["DigitsMlpP99OverSLO"]
    assert exprs["DigitsMlpP99OverSLO"].endswith("> 0.015")
    assert exprs["DigitsMlpReplicaCostOverBudget"].endswith("> 200")
    assert exprs["DigitsMlpPredictionCostOverBudget"].endswith("> 200")
    ray = yaml.safe_load((root / "deploy/ray/serve.yaml").read_text())
    assert ray["applications"][0]["import_path"] == "serving.ray_app:app_builder"
    docker = (root / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.txt" in docker and "USER 10001" in docker


def test_ray_replica_options_come_from_the_manifest(demo_bundle):
    from serving.ray_app import replica_options

    scaling = demo_bundle[0].manifest.scaling
    # batching 32 rows x 1 instance: a replica runs 32 rows at once, holds up to 4 rounds
    assert (scaling.target_ongoing_requests, scaling.max_ongoing_requests) == (32.0, 128)
    options = replica_options({"bundles": [str(demo_bundle[0].path)]})
    assert options["name"] == "digits-mlp" and options["ray_actor_options"]["num_cpus"] == 1
    assert options["logging_config"] == {"enable_access_log": False}
    assert options["max_ongoing_requests"] == scaling.max_ongoing_requests
    assert options["autoscaling_config"] == {
        "min_replicas": 1,
        "max_replicas": 2,  # what the 200 USD budget pays for, as the HPA
        "target_ongoing_requests": 32.0,
    }
    fixed = replica_options(
        {"bundles": str(demo_bundle[0].path), "num_replicas": 3, "num_cpus": 0.5}
    )
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"]["num_cpus"] == 0.5
    with pytest.raises(ValueError, match="unknown Ray Serve app argument 'replicas'"):
        replica_options({"bundles": [str(demo_bundle[0].path)], "replicas": 2})


def test_kubernetes_manifests_fit_together_and_follow_the_manifest(demo_bundle):
    """Structure only (no cluster here): kinds and API versions, the Service and HPA find the
    Deployment, ports agree, probes and the scrape path are routes the runtime answers, and
    replicas and concurrency come from the manifest's scaling section."""
    import asyncio

    from serving.app import ServingApp
    from serving.endpoint import Endpoint
    from serving.http import Request
    from serving.metrics import ServingMetrics

    root, scaling = demo_bundle[0].path, demo_bundle[0].manifest.scaling
    kube = {p.name: yaml.safe_load(p.read_text()) for p in (root / "deploy/kubernetes").iterdir()}
    dep, svc, hpa, isvc = (
        kube[n] for n in ("deployment.yaml", "service.yaml", "hpa.yaml", "inferenceservice.yaml")
    )
    assert [(d["apiVersion"], d["kind"]) for d in (dep, svc, hpa, isvc)] == [
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        ("serving.kserve.io/v1beta1", "InferenceService"),
    ]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    for selector in (dep["spec"]["selector"]["matchLabels"], svc["spec"]["selector"]):
        assert selector and selector.items() <= pod_labels.items()
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        dep["apiVersion"],
        "Deployment",
        dep["metadata"]["name"],
    )
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    (svc_port,) = svc["spec"]["ports"]
    assert svc_port["targetPort"] in ports and svc_port["port"] == ports[svc_port["targetPort"]]
    scrape = dep["spec"]["template"]["metadata"]["annotations"]
    assert int(scrape["prometheus.io/port"]) in ports.values()
    (kserve,) = isvc["spec"]["predictor"]["containers"]
    assert [p["containerPort"] for p in kserve["ports"]] == list(ports.values())
    probes = [container["readinessProbe"], container["livenessProbe"]]
    probes += [kserve["readinessProbe"], kserve["livenessProbe"]]
    for probe in probes:
        port = probe["httpGet"]["port"]
        assert port in ports or port in ports.values()
    env = {e["name"]: e for e in container["env"]}
    assert env["SERVING_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "digits-mlp-token"

    async def status_of(path: str) -> int:
        app = ServingApp([Endpoint(load_bundle(root), ServingMetrics())])
        response = app.handle(Request("GET", path))
        status = (response if not asyncio.iscoroutine(response) else await response).status
        await app.shutdown()
        return status

    paths = {p["httpGet"]["path"] for p in probes} | {scrape["prometheus.io/path"]}
    assert paths == {"/v2/health/ready", "/v2/health/live", "/metrics"}
    for path in paths:  # ready is 503 until warm-up: a real route either way, never 404
        assert asyncio.run(status_of(path)) in (200, 503), path

    assert dep["spec"]["replicas"] == hpa["spec"]["minReplicas"] == scaling.min_replicas
    assert hpa["spec"]["maxReplicas"] == scaling.max_replicas
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (
        scaling.min_replicas,
        scaling.max_replicas,
    )
    assert predictor["scaleMetric"] == "concurrency"
    assert predictor["scaleTarget"] == 32 and predictor["containerConcurrency"] == 128


def test_the_yaml_in_docs_kubernetes_is_what_export_writes(demo_bundle):
    """docs/kubernetes.md shows the export of digits-mlp with a 200 USD budget at 0.1 USD/h;
    the demo bundle has the same settings that shape the Kubernetes files."""
    import re

    doc = (Path(__file__).resolve().parents[3] / "docs" / "kubernetes.md").read_text()
    shown = dict(re.findall(r"### `deploy/kubernetes/(\S+)`[^\n]*\n\n```yaml\n(.*?)```", doc, re.S))
    kube = demo_bundle[0].path / "deploy/kubernetes"
    assert sorted(shown) == sorted(p.name for p in kube.iterdir())
    for name, text in shown.items():
        assert text == (kube / name).read_text(), f"docs/kubernetes.md shows an old {name}"


def test_the_archive_unpacks_to_the_same_verified_bundle(demo_bundle, tmp_path):
    info = demo_bundle[0]
    assert info.archive == info.path.with_name("digits-mlp.tar.gz")
    folder = unpack_archive(info.archive, tmp_path / "unpacked")
    assert folder.name == "digits-mlp"
    assert load_bundle(folder).manifest == load_bundle(info.path).manifest


def test_profile_figures_come_from_a_stored_run(tmp_path, db_path):
    with RunStore(db_path) as store:
        run_id = store.add(
            "profile",
            model="m",
            fingerprint="f",
            config={"batch_size": 8, "threads": 1},
            metrics={
                "latency_ms_p99": 3.0,
                "throughput_items_per_s": 900.0,
                "energy_j_per_item": 0.02,
                "energy_method": "measured",
            },
        )
    model = _classifier(tmp_path / "m.onnx", (4,))
    info = export(model, tmp_path / "b", profile=run_id, usd_per_million=1.5)
    assert info.manifest.profile == {
        "run_id": run_id,
        "model": "m",
        "fingerprint": "f",
        "batch_size": 8,
        "threads": 1,
        "latency_ms_p99": 3.0,
        "throughput_items_per_s": 900.0,
        "energy_j_per_item": 0.02,
        "energy_method": "measured",
    }
    assert info.manifest.cost.usd_per_million == 1.5 and info.manifest.cost.method == "typed in"


def test_a_cascade_bundle_holds_both_models(tmp_path):
    small = _classifier(tmp_path / "small.onnx", (8,), seed=1)
    large = _classifier(tmp_path / "large.onnx", (2, 4), seed=2)
    info = export(None, tmp_path / "b", cascade=(small, large, 0.7), confidence="margin")
    m = info.manifest
    assert [f.role for f in m.models] == ["small", "large"] and m.name == "small-cascade"
    assert (m.cascade.threshold, m.cascade.confidence, m.cascade.output) == (
        0.7,
        "margin",
        "output",
    )
    assert load_bundle(info.path).manifest.cascade == m.cascade


def test_a_cascade_bundle_records_each_models_figures_and_prices_its_time(tmp_path):
    small = _classifier(tmp_path / "small.onnx", (8,), seed=1)
    large = _classifier(tmp_path / "large.onnx", (2, 4), seed=2)
    figures = {
        "small": {"energy_j_per_item": 0.01, "energy_method": "measured",
                  "throughput_items_per_s": 2000.0, "latency_method": "measured"},
        "large": {"energy_j_per_item": 0.2, "throughput_items_per_s": 100.0},
    }  # fmt: skip
    info = export(
        None,
        tmp_path / "b",
        cascade=(small, large, 0.7),
        profiles=figures,
        instance_usd_per_h=1.8,
        utilisation=0.5,
    )
    by_role = {f.role: f.profile for f in load_bundle(info.path).manifest.models}
    priced = {"usd_per_million": 0.5, "cost_method": "typed in"}  # the price is typed in
    assert by_role["small"] == {**figures["small"], **priced}
    assert by_role["large"]["energy_method"] == "estimated"  # unsaid: not claimed measured
    assert by_role["large"]["usd_per_million"] == pytest.approx(10.0)
    assert load_bundle(info.path).manifest.profile == {}
    plain = export(None, tmp_path / "p", cascade=(small, large, 0.7), profiles=figures)
    assert "usd_per_million" not in plain.manifest.model("small").profile  # no price: no cost
    single = export(small, tmp_path / "s")
    assert [f.profile for f in single.manifest.models] == [{}]
    with pytest.raises(ConfigError, match="both models' figures"):
        export(None, tmp_path / "x", cascade=(small, large, 0.7), profiles={"small": {}})
    with pytest.raises(ConfigError, match="pass profile= for a single model"):
        export(small, tmp_path / "x", profiles=figures)


def test_bad_arguments_are_refused_and_leave_nothing_behind(tmp_path):
    small = _classifier(tmp_path / "small.onnx", (8,))
    odd = _classifier(tmp_path / "odd.onnx", (5,))
    out = tmp_path / "out" / "b"
    cases = [
        (dict(cascade=(small, odd, 0.5)), "same tensors"),
        (dict(cascade=(small, small, 1.5)), "must be in"),
        (dict(cascade=(small,)), "must be \\(small, large, threshold\\)"),
        (dict(batching={"max_rows": 4}), "batching has no setting 'max_rows'"),
        (dict(slo_p99_ms=-1), "slo_p99_ms=-1 must be"),
        (dict(profile="fast"), "cannot read a profile from str"),
        (dict(scaling={"replicas": 2}), "scaling has no setting 'replicas'"),
        (dict(scaling={"min_replicas": 3, "max_replicas": 2}), "scaling.max_replicas must be"),
        (dict(scaling={"max_ongoing_requests": 4}), "scaling.max_ongoing_requests must be"),
    ]
    for kwargs, phrase in cases:
        with pytest.raises(ConfigError, match=phrase):
            export(None if "cascade" in kwargs else small, out, **kwargs)
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_bundles_and_settings_that_say_intra_op_keep_working(tmp_path):
    """``threads.intra_op`` is now ``threads.threads``: bundles exported before still load, and
    export settings with the old name still work; giving both names is refused."""
    model = _classifier(tmp_path / "m.onnx", (4,))
    info = export(model, tmp_path / "b", threads={"intra_op": 2, "instances": 1})
    assert info.manifest.threads.threads == 2 and info.manifest.threads.instances == 1
    doc = json.loads((info.path / "manifest.json").read_text())
    assert list(doc["threads"])[:2] == ["threads", "inter_op"]
    old = {"intra_op" if k == "threads" else k: v for k, v in doc["threads"].items()}
    (info.path / "manifest.json").write_text(json.dumps({**doc, "threads": {**old, "intra_op": 3}}))
    write_checksums(info.path)
    assert load_bundle(info.path).manifest.threads.threads == 3
    both = {**old, "threads": 3}
    (info.path / "manifest.json").write_text(json.dumps({**doc, "threads": both}))
    write_checksums(info.path)
    with pytest.raises(BundleError, match="threads sets both 'threads' and 'intra_op'"):
        load_bundle(info.path)
    with pytest.raises(ConfigError, match="keep only 'threads'"):
        export(model, tmp_path / "c", threads={"intra_op": 2, "threads": 2})


@pytest.mark.parametrize("name", ["docker", "kubernetes", "alerts", "ray"])
def test_the_docstring_examples_run(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"workbench.ship.{name}"))
    assert result.attempted > 0 and result.failed == 0


def test_an_existing_folder_is_kept_unless_overwrite(tmp_path):
    model = _classifier(tmp_path / "m.onnx", (4,))
    out = tmp_path / "b"
    export(model, out)
    with pytest.raises(ConfigError, match="already exists"):
        export(model, out)
    (out / "manifest.json").write_text("{}")
    with pytest.raises(BundleError):
        load_bundle(out)
    export(model, out, overwrite=True)
    assert load_bundle(out).manifest.name == "m"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args],
        capture_output=True,
        text=True,
        env=os.environ,
        timeout=300,
    )


def test_cli_export_writes_a_bundle_and_reports_errors_in_one_line(tmp_path):
    model = _classifier(tmp_path / "m.onnx", (4,))
    out = tmp_path / "bundle"
    done = _cli(
        "export",
        str(model),
        str(out),
        "--slo-p99-ms",
        "10",
        "--cache",
        "--tar",
        "--max-batch-rows",
        "16",
    )
    assert done.returncode == 0, done.stderr
    assert "wrote bundle 'm'" in done.stdout and "python -m serving" in done.stdout
    manifest = load_bundle(out).manifest
    assert manifest.batching.max_batch_rows == 16 and manifest.cache.enabled
    assert out.with_name("bundle.tar.gz").is_file()
    again = _cli("export", str(model), str(out))
    assert again.returncode == 2
    assert "already exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_cli_export_records_each_cascade_models_stored_profile(tmp_path, db_path):
    small = _classifier(tmp_path / "small.onnx", (8,), seed=1)
    large = _classifier(tmp_path / "large.onnx", (2, 4), seed=2)
    with RunStore(db_path) as store:
        ids = [
            store.add("profile", model=m, fingerprint=m, config={},
                      metrics={"energy_j_per_item": j, "energy_method": "measured"})
            for m, j in (("small", 0.01), ("large", 0.3))
        ]  # fmt: skip
    out = tmp_path / "bundle"
    args = ["export", str(small), str(out), "--cascade-large", str(large), "--db", db_path]
    done = _cli(*args, "--small-run-id", str(ids[0]), "--large-run-id", str(ids[1]))
    assert done.returncode == 0, done.stderr
    by_role = {f.role: f.profile for f in load_bundle(out).manifest.models}
    assert (by_role["small"]["energy_j_per_item"], by_role["large"]["run_id"]) == (0.01, ids[1])
    half = _cli(*args[:2], str(tmp_path / "half"), *args[3:], "--large-run-id", str(ids[1]))
    assert half.returncode == 2 and "both models' figures" in half.stderr
