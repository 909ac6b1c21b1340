"""The runtime's OpenAPI description: it matches the routes the server really has, and
schemathesis, driving a live server on loopback with it, finds no 5xx, no crash and no response
that breaks the document.

Budget: ``ST_EXAMPLES`` examples per operation (10, about 15 s; ``WORKBENCH_RELIABILITY=full``:
300, several minutes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from serving_helpers import export_bundle, serving

from serving import app as serving_app
from serving.app import OPENAPI_PATH
from serving.protocol import NUMPY_DTYPES

pytestmark = pytest.mark.reliability

FULL = os.environ.get("WORKBENCH_RELIABILITY") == "full"
ST_EXAMPLES = 300 if FULL else 10
TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
METHODS = ("get", "post", "put", "delete", "patch")


@pytest.fixture(scope="module")
def server(models_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("openapi")
    bundles = [
        export_bundle(models_dir / "lin.onnx", out / "lin", name="lin"),
        export_bundle(models_dir / "emb.onnx", out / "emb", name="emb", version="3"),
    ]
    (out / "token").write_text(TOKEN)
    args = ("--token-file", str(out / "token"), "--max-body-mb", "0.25")
    with serving(bundles, out / "server.log", *args) as srv:
        srv.bundles = bundles
        yield srv


def _document() -> dict:
    return json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))


def _operations(doc: dict) -> list[tuple[str, str]]:
    return [(path, m) for path, item in doc["paths"].items() for m in item if m in METHODS]


def test_the_document_is_valid_openapi_and_describes_the_v2_error_body():
    from schemathesis.openapi import from_path

    schema = from_path(str(OPENAPI_PATH))
    schema.validate()  # raises on a document that breaks the OpenAPI 3.0 schema
    doc = _document()
    assert doc["openapi"].startswith("3.0")
    assert doc["components"]["schemas"]["Error"]["required"] == ["error"]
    assert doc["components"]["schemas"]["Datatype"]["enum"] == list(NUMPY_DTYPES)
    for path, method in _operations(doc):
        responses = doc["paths"][path][method]["responses"]
        assert "200" in responses and "405" in responses, (path, method)
        if path.startswith("/v2/models"):
            assert "404" in responses, path
    infer = doc["paths"]["/v2/models/{model_name}/infer"]["post"]["responses"]
    assert {"400", "401", "404", "405", "413", "503"} <= set(infer)


def test_the_documented_routes_are_the_app_routes():
    """The route table of ``serving.app``'s docstring and the document name the same routes."""
    table = re.findall(r"^(GET|POST)\s+(.+?)\s{2,}", serving_app.__doc__, flags=re.M)
    routes = set()
    for method, cell in table:
        for path in re.findall(r"``([^`]+)``", cell):
            path = path.replace("{m}", "{model_name}")
            routes.add((path, method.lower()))
            if "{model_name}" in path:  # the optional [/versions/{v}] of every model route
                versioned = path.replace("{model_name}", "{model_name}/versions/{model_version}")
                routes.add((versioned, method.lower()))
    assert routes == set(_operations(_document()))


def _concrete(path: str) -> str:
    return path.replace("{model_name}", "emb").replace("{model_version}", "3")


def test_every_documented_operation_answers_and_other_methods_get_405(server):
    doc = _document()
    good = {"inputs": [{"name": "ids", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}]}
    for path, method in _operations(doc):
        body = json.dumps(good).encode() if method == "post" else None
        status, headers, raw = server.request(method.upper(), _concrete(path), body, AUTH)
        assert status == 200, (path, method, raw)
        content = doc["paths"][path][method]["responses"]["200"]["content"]
        assert headers["content-type"].split(";")[0] in content, (path, headers)
        for other in METHODS:
            if other in doc["paths"][path]:
                continue
            status, headers, raw = server.request(other.upper(), _concrete(path), b"", AUTH)
            assert status == 405 and headers["allow"] == method.upper(), (path, other, status)
            assert "not allowed" in json.loads(raw)["error"]


def test_the_served_document_names_this_servers_models_and_versions(server):
    status, _, raw = server.request("GET", "/openapi.json", headers=AUTH)
    served = json.loads(raw)
    assert status == 200
    params = served["components"]["parameters"]
    assert params["ModelName"]["schema"]["enum"] == ["emb", "lin"]
    assert params["ModelVersion"]["schema"]["enum"] == ["1", "3"]
    for name in ("ModelName", "ModelVersion"):
        del params[name]["schema"]["enum"]
    assert served == _document()  # otherwise the static file, unchanged
    assert server.request("GET", "/openapi.json")[0] == 401  # behind the token like the API


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(server, tmp_path):
    """Every check of schemathesis but ``positive_data_acceptance``: the document describes V2
    generically (any tensor names and shapes), so a schema-valid request may still not fit the
    served model's signature, and the server rightly answers it 400."""
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert cli, "schemathesis is in the dev extra"
    command = [
        cli,
        "run",
        f"http://{server.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        str(ST_EXAMPLES),
        "--generation-database",
        "none",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=tmp_path, timeout=600 if FULL else 120
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    summary = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert summary and int(summary[1]) >= 12 * ST_EXAMPLES // 2, done.stdout[-2000:]
    assert "12 selected / 12 total" in done.stdout  # every operation was exercised
    assert server.proc.poll() is None  # no crash
    assert server.request("GET", "/v2/health/live")[0] == 200
    errors = [e for e in server.log() if e.get("level") == "error"]
    assert errors == [], errors[:3]


def test_every_bundle_carries_the_document_with_its_runtime(server):
    """The bundle's own copy of the runtime (what its Dockerfile runs) has the document too."""
    bundle = server.bundles[0]
    assert (bundle / "serving" / "openapi.json").read_bytes() == OPENAPI_PATH.read_bytes()
    assert "  serving/openapi.json\n" in (bundle / "SHA256SUMS").read_text()
