"""Bundle verification: checksums name the failing file; pickles, unknown schema versions and
unsafe archive members are refused."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import pytest
from serving_helpers import export_bundle

from serving.manifest import (
    SCHEMA_VERSION,
    BundleError,
    Scaling,
    load_bundle,
    parse_manifest,
    unpack_archive,
    write_checksums,
)


@pytest.fixture
def bundle(models_dir, tmp_path):
    return export_bundle(models_dir / "lin.onnx", tmp_path / "lin", name="lin")


def test_an_exported_bundle_verifies_and_reads_back(bundle):
    loaded = load_bundle(bundle)
    assert loaded.manifest.name == "lin" and loaded.manifest.schema_version == SCHEMA_VERSION
    assert loaded.manifest.models[0].file == "models/lin.onnx"
    assert loaded.manifest.models[0].inputs[0].shape == (-1, 8)


def test_pycache_folders_written_by_python_are_ignored(bundle):
    (bundle / "serving" / "__pycache__").mkdir()
    (bundle / "serving" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\x00")
    load_bundle(bundle)


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        (lambda b: (b / "models/lin.onnx").write_bytes(b"\x08\x07"), "checksum mismatch for"),
        (lambda b: (b / "manifest.json").unlink(), "manifest.json is missing"),
        (lambda b: (b / "Dockerfile").unlink(), "incomplete"),
        (lambda b: (b / "SHA256SUMS").unlink(), "SHA256SUMS is missing"),
        (lambda b: (b / "notes.txt").write_text("hi"), "not listed in SHA256SUMS"),
        (lambda b: (b / "model.pkl").write_bytes(b"x"), "is a pickle"),
        (lambda b: (b / "weights.bin").write_bytes(b"\x80\x05\x95"), "is a pickle"),
    ],
    ids=["tampered", "no manifest", "incomplete", "no checksums", "unlisted", "pkl", "pickled"],
)
def test_a_damaged_bundle_is_refused_naming_the_file(bundle, change, phrase):
    change(bundle)
    with pytest.raises(BundleError, match=phrase):
        load_bundle(bundle)


def test_a_tampered_file_is_named_in_the_error(bundle):
    path = bundle / "serving" / "app.py"
    path.write_text(path.read_text() + "\n# changed\n")
    with pytest.raises(BundleError) as err:
        load_bundle(bundle)
    assert str(path) in str(err.value)


def test_checksums_with_unsafe_paths_are_refused(bundle):
    sums = bundle / "SHA256SUMS"
    sums.write_text(sums.read_text() + f"{'0' * 64}  ../outside.txt\n")
    with pytest.raises(BundleError, match=r"unsafe path '\.\./outside\.txt'"):
        load_bundle(bundle)


def _rewrite_manifest(bundle, **changes):
    doc = json.loads((bundle / "manifest.json").read_text())
    doc.update(changes)
    (bundle / "manifest.json").write_text(json.dumps(doc))
    write_checksums(bundle)


@pytest.mark.parametrize(
    ("changes", "phrase"),
    [
        ({"schema_version": 99}, "schema_version 99 is not supported"),
        ({"batching": {"max_batch_rows": 0}}, "batching.max_batch_rows must be"),
        ({"batching": {"max_rows": 4}}, "batching has an unknown field"),
        ({"threads": {"instances": 1.5}}, "threads.instances must be"),
        ({"name": "a/b"}, "without '/'"),
        ({"cascade": {"small": "a", "large": "b", "threshold": 0.5}}, "cascade must be small"),
        ({"scaling": {"min_replicas": 0}}, "scaling.min_replicas must be"),
        ({"scaling": {"min_replicas": 2, "max_replicas": 1}}, "scaling.max_replicas must be"),
        ({"scaling": {"target_ongoing_requests": 0}}, "scaling.target_ongoing_requests must be"),
        ({"scaling": {"max_ongoing_requests": 1}}, "scaling.max_ongoing_requests must be"),
        ({"scaling": {"replicas": 2}}, "scaling has an unknown field"),
    ],
)
def test_bad_manifest_fields_are_named(bundle, changes, phrase):
    _rewrite_manifest(bundle, **changes)
    with pytest.raises(BundleError, match=phrase):
        load_bundle(bundle)


def test_a_manifest_without_scaling_still_loads_with_the_defaults(bundle):
    """Manifests written before the scaling section existed keep loading (same schema)."""
    doc = json.loads((bundle / "manifest.json").read_text())
    assert doc["scaling"]["max_ongoing_requests"] == 128  # export wrote it from batching
    del doc["scaling"]
    (bundle / "manifest.json").write_text(json.dumps(doc))
    write_checksums(bundle)
    assert load_bundle(bundle).manifest.scaling == Scaling()


def test_model_files_must_be_onnx_inside_the_bundle():
    base = {"schema_version": SCHEMA_VERSION, "name": "m"}
    with pytest.raises(BundleError, match=r"must be an \.onnx file"):
        parse_manifest({**base, "models": [{"file": "models/m.pkl"}]})
    with pytest.raises(BundleError, match="unsafe path"):
        parse_manifest({**base, "models": [{"file": "/etc/m.onnx"}]})


def _tar_with(path, members: dict[str, bytes], symlink: str | None = None):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if symlink:
            info = tarfile.TarInfo(symlink)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return path


@pytest.mark.parametrize(
    ("members", "symlink", "phrase"),
    [
        ({"b/../../evil.txt": b"x"}, None, "unsafe path"),
        ({"/tmp/evil.txt": b"x"}, None, "unsafe path"),
        ({"b/manifest.json": b"{}"}, "b/link", "link or special file"),
    ],
    ids=["dotdot", "absolute", "symlink"],
)
def test_unsafe_archive_members_are_refused_before_extracting(tmp_path, members, symlink, phrase):
    archive = _tar_with(tmp_path / "b.tar.gz", members, symlink)
    with pytest.raises(BundleError, match=phrase):
        unpack_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path.parent / "evil.txt").exists()


def test_an_archive_round_trips(bundle, tmp_path):
    archive = shutil.make_archive(str(tmp_path / "arch"), "gztar", bundle.parent, bundle.name)
    folder = unpack_archive(archive, tmp_path / "out")
    assert load_bundle(folder).manifest.name == "lin"
