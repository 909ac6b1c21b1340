"""Hostile input the other serving tests do not cover: how the token is compared, where the
server listens, archive members that point outside (hard links, devices, fifos), and bundles
refused by ``python -m serving`` with one log line that names the file and the fix."""

from __future__ import annotations

import asyncio
import hmac
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile

import psutil
import pytest
from serving_helpers import REPO, export_bundle, serving

from serving.__main__ import parse_args
from serving.app import ServingApp
from serving.http import Request
from serving.manifest import BundleError, load_bundle, unpack_archive, write_checksums

pytestmark = pytest.mark.reliability

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def lin_bundle(models_dir, tmp_path_factory):
    return export_bundle(
        models_dir / "lin.onnx", tmp_path_factory.mktemp("hostile") / "lin", name="lin", tar=True
    )


# -- the token ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        (b"Bearer " + TOKEN.encode(), 200),
        (b"Bearer " + TOKEN[:-1].encode() + b"X", 401),  # same length, last byte wrong
        (b"Bearer " + TOKEN[:-1].encode(), 401),  # a prefix
        (b"Bearer " + TOKEN.encode() + b"x", 401),
        (b"bearer " + TOKEN.encode(), 401),
        (TOKEN.encode(), 401),
        (b"Bearer \xff\xfe", 401),
    ],
)
def test_the_token_is_checked_with_one_constant_time_comparison(monkeypatch, header, status):
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    app = ServingApp([], token=TOKEN)
    headers = {} if header is None else {b"authorization": header}

    async def call():
        return app.handle(Request("GET", "/v2", headers))

    response = asyncio.run(call())
    assert response.status == status
    # every request but the health checks goes through hmac.compare_digest, once, whole header
    assert calls == [(header or b"", b"Bearer " + TOKEN.encode())]
    if status == 401:
        assert dict(response.headers)[b"www-authenticate"] == b"Bearer"
    calls.clear()
    assert asyncio.run(_get(app, "/v2/health/live")).status == 200 and calls == []


async def _get(app, path):
    return app.handle(Request("GET", path, {}))


def test_without_a_token_no_comparison_is_made_and_every_route_is_open(monkeypatch):
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: pytest.fail("compared"))
    assert asyncio.run(_get(ServingApp([]), "/v2")).status == 200


# -- where the server listens ------------------------------------------------------------------


def test_the_server_binds_loopback_unless_told_otherwise(lin_bundle, tmp_path):
    assert parse_args([str(lin_bundle)]).host == "127.0.0.1"
    with serving([lin_bundle], tmp_path / "log") as server:
        listening = [
            c.laddr
            for c in psutil.Process(server.proc.pid).net_connections("inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert [a.ip for a in listening] == ["127.0.0.1"] and listening[0].port == server.port
        assert server.log()[0]["host"] == "127.0.0.1"


def test_a_port_in_use_is_one_clear_line_and_exit_2(lin_bundle):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve(lin_bundle, "--port", str(port))
    error = _one_error_line(done)
    assert f"cannot listen on 127.0.0.1:{port}" in error and "pick another --port" in error


# -- archives ----------------------------------------------------------------------------------


def _archive(path, *members: tarfile.TarInfo):
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("b/manifest.json")  # a harmless member first
        info.size = 2
        tar.addfile(info, io.BytesIO(b"{}"))
        for member in members:
            tar.addfile(member, io.BytesIO(b"x" * member.size) if member.isfile() else None)
    return path


def _member(name, kind=tarfile.REGTYPE, link="", size=0):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, size
    return info


@pytest.mark.parametrize(
    ("member", "phrase"),
    [
        (_member("b/passwd", tarfile.LNKTYPE, "/etc/passwd"), "link or special file"),
        (_member("b/up", tarfile.LNKTYPE, "../../outside"), "link or special file"),
        (_member("b/dev", tarfile.CHRTYPE), "link or special file"),
        (_member("b/disk", tarfile.BLKTYPE), "link or special file"),
        (_member("b/fifo", tarfile.FIFOTYPE), "link or special file"),
        (_member("b/./../../x", size=1), "unsafe path"),
        (_member("..\\..\\x", size=1), "unsafe path"),
        (_member("C:/x", size=1), "unsafe path"),
    ],
    ids=[
        "hardlink-abs",
        "hardlink-up",
        "chardev",
        "blockdev",
        "fifo",
        "dot-dotdot",
        "bslash",
        "drive",
    ],
)
def test_members_pointing_outside_or_special_are_refused_before_anything_is_extracted(
    tmp_path, member, phrase
):
    archive = _archive(tmp_path / "b.tar.gz", member)
    with pytest.raises(BundleError, match=phrase):
        unpack_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # not even the harmless first member
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar.gz"]


# -- bundles refused at start, through the CLI ----------------------------------------------------


def _serve(bundle, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "serving", str(bundle), "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one JSON log line, no traceback
    entry = json.loads(lines[0])
    assert entry["level"] == "error"
    return entry["error"]


def _copy(bundle, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(bundle, copy)
    return copy


def _set_manifest(bundle, **changes):
    doc = json.loads((bundle / "manifest.json").read_text())
    doc.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(doc))
    write_checksums(bundle)  # consistent checksums: the loader must read the manifest itself


def test_an_unknown_schema_version_is_refused_naming_the_file(lin_bundle, tmp_path):
    bundle = _copy(lin_bundle, tmp_path)
    _set_manifest(bundle, schema_version=2)
    error = _one_error_line(_serve(bundle))
    assert str(bundle) in error and "schema_version 2 is not supported" in error
    assert "serve the bundle with the runtime copied inside it" in error


def test_a_manifest_that_is_not_json_is_refused_naming_the_file(lin_bundle, tmp_path):
    bundle = _copy(lin_bundle, tmp_path)
    (bundle / "manifest.json").write_bytes(b"\xff{not json")
    write_checksums(bundle)
    error = _one_error_line(_serve(bundle))
    assert str(bundle / "manifest.json") in error and "re-export it" in error


def test_a_corrupt_model_with_matching_checksums_is_refused(lin_bundle, tmp_path):
    """Checksums rewritten to match (a tampered bundle): ONNX Runtime's refusal is the error."""
    bundle = _copy(lin_bundle, tmp_path)
    (bundle / "models" / "lin.onnx").write_bytes(b"\x08\x07 not a model")
    write_checksums(bundle)
    load_bundle(bundle)  # the checksums agree ...
    error = _one_error_line(_serve(bundle))  # ... the model does not load
    assert str(bundle / "models" / "lin.onnx") in error and "re-export the bundle" in error


def test_a_missing_model_file_listed_nowhere_is_refused(lin_bundle, tmp_path):
    bundle = _copy(lin_bundle, tmp_path)
    (bundle / "models" / "lin.onnx").unlink()
    write_checksums(bundle)  # the file is gone from SHA256SUMS too: the manifest still names it
    error = _one_error_line(_serve(bundle))
    assert "models/lin.onnx" in error and "is not in the bundle" in error


@pytest.mark.parametrize("damage", ["truncated", "not gzip"])
def test_a_damaged_archive_is_refused_naming_it(lin_bundle, tmp_path, damage):
    data = lin_bundle.with_name("lin.tar.gz").read_bytes()
    archive = tmp_path / "lin.tar.gz"
    archive.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"PK\x03\x04" + data)
    error = _one_error_line(_serve(archive))
    assert f"cannot read {archive} as a tar archive" in error and "copy the archive again" in error
