"""The bundle manifest: schema, validation, checksums, and safe unpacking of bundle archives.

A bundle is a folder holding ``manifest.json`` (what to serve and how), ``SHA256SUMS`` (the
sha256 of every other file, in ``sha256sum`` format) and the files they name. :func:`load_bundle`
refuses a bundle whose files do not match their checksums (naming the file), whose listed files
are missing, which holds unlisted files or pickles, or whose schema version it does not know.
:func:`unpack_archive` extracts a ``.tar.gz`` bundle, refusing members with ``..``, absolute
paths, links or devices. Nothing in a bundle is executed while loading it.

Checksums catch corrupt, truncated and edited files; they are not a signature (whoever can edit
both a file and ``SHA256SUMS`` can change a bundle), so fetch bundles over a trusted channel.

Example
-------
>>> bundle = load_bundle("out/digits-cnn")          # doctest: +SKIP
>>> bundle.manifest.name, [m.file for m in bundle.manifest.models]  # doctest: +SKIP
('digits-cnn', ['models/digits-cnn.onnx'])
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
CHECKSUMS = "SHA256SUMS"
#: Datatypes of the Open Inference Protocol that the runtime serves.
DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
)
ROLES = ("main", "small", "large")
CONFIDENCE_METHODS = ("max_softmax", "margin")
#: File name endings of pickle-based formats, refused whatever their content.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".npy", ".npz")
#: Folders that Python writes next to a package it runs (the bundle's own ``serving`` copy).
IGNORED_DIRS = ("__pycache__",)
#: Fields read under an older name: section -> {old name: current name}. Bundles exported
#: before the rename say ``threads.intra_op`` for what every other API calls ``threads``.
RENAMED_FIELDS = {"threads": {"intra_op": "threads"}}


class BundleError(Exception):
    """A bundle that cannot be served; the message names the file or field and the fix."""


@dataclass(frozen=True)
class TensorMeta:
    """One input or output: V2 datatype and shape, ``-1`` for a variable dimension.

    ``typical_shape`` (inputs, optional) is a representative shape of one row, e.g. ``(1, 128)``
    for a text model: warm-up measures with it, so its timings reflect real requests.
    """

    name: str
    datatype: str
    shape: tuple[int, ...]
    typical_shape: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ModelFile:
    """One ONNX file of the bundle and its role (``main``, or ``small``/``large`` in a cascade).

    ``profile`` (optional, cascade models) holds this model's own figures, as the manifest's
    ``profile`` does for a single model: ``energy_j_per_item`` and ``energy_method``, and
    ``usd_per_million`` with ``cost_method`` when the export could price this model's time. The
    runtime charges every cascade row the small model's figures and every escalated row the large
    model's too; without them it charges a cascade nothing and says so (``method="unknown"``).
    """

    name: str
    file: str
    role: str = "main"
    inputs: tuple[TensorMeta, ...] = ()
    outputs: tuple[TensorMeta, ...] = ()
    profile: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Batching:
    """Adaptive batching across concurrent requests.

    ``max_batch_rows`` counts rows (items), not requests; ``max_delay_ms`` is the most a batch
    waits for requests already being received (it never waits when nothing else is in flight);
    ``max_queue_rows`` bounds the queue (beyond it requests get 503 with Retry-After).
    ``queue_target_ms`` > 0 turns on overload control, decided by the arrival rate: when the
    requests offered during the last ``queue_interval_ms`` need over 2x the model time the
    instances have in it (costs from the warm-up), or over 1x both over it and over 8 intervals,
    a request is refused while others wait and a queued one that waited longer than the target
    is refused unrun. See ``serving.batcher``.
    """

    enabled: bool = True
    max_batch_rows: int = 32
    max_delay_ms: float = 2.0
    max_queue_rows: int = 1024
    queue_target_ms: float = 0.0
    queue_interval_ms: float = 250.0


@dataclass(frozen=True)
class Threads:
    """ONNX Runtime threads per session (``threads``: the intra-op pool; ``inter_op``), and
    sessions (``instances``, one worker thread each).

    A single-instance model whose largest batch runs in under ``inline_below_ms`` (measured at
    warm-up) runs on the event loop thread instead: cheaper than a thread hand-off. 0 disables.
    """

    threads: int = 1
    inter_op: int = 1
    instances: int = 1
    spinning: bool = False
    inline_below_ms: float = 1.0


@dataclass(frozen=True)
class Cache:
    """Response cache keyed on model and input bytes: LRU with a time to live."""

    enabled: bool = False
    max_entries: int = 1024
    ttl_s: float = 60.0


@dataclass(frozen=True)
class Cascade:
    """Run ``small`` first; rows whose confidence is below ``threshold`` go to ``large``.

    ``confidence`` is ``max_softmax`` (largest class probability) or ``margin`` (largest minus
    second largest); ``scores`` says whether ``output`` holds ``logits`` or ``probabilities``.
    """

    small: str
    large: str
    threshold: float
    confidence: str = "max_softmax"
    output: str = ""
    scores: str = "logits"


@dataclass(frozen=True)
class Scaling:
    """Replicas for hosts that scale out (Ray Serve, Kubernetes, KServe).

    Between ``min_replicas`` and ``max_replicas`` replicas; the autoscaler adds one when the
    requests in flight per replica exceed ``target_ongoing_requests``; a replica takes at most
    ``max_ongoing_requests`` at once (more wait at the router or proxy). ``python -m serving`` is
    one replica and does not read this section. Older manifests without it get these defaults.
    """

    min_replicas: int = 1
    max_replicas: int = 4
    target_ongoing_requests: float = 2.0
    max_ongoing_requests: int = 8


@dataclass(frozen=True)
class Slo:
    """Service-level objective, used by the alert rules."""

    p99_ms: float | None = None


@dataclass(frozen=True)
class Cost:
    """Money per prediction and the monthly budget, with where the figure came from."""

    usd_per_million: float | None = None
    monthly_budget_usd: float | None = None
    instance_usd_per_h: float | None = None
    utilisation: float | None = None
    method: str = ""


@dataclass(frozen=True)
class Energy:
    """What the live meter needs to estimate CPU energy where no counter exists: the TDP of the
    ``logical_cores`` of the CPU the bundle was exported on (``cpu_tdp_w``, from the workbench's
    TDP table), that CPU's ``cpu_model`` and how the TDP was found (``tdp_source``). Older
    manifests without it get 4 W per logical core (:mod:`serving.live_energy`)."""

    cpu_tdp_w: float | None = None
    cpu_model: str = ""
    logical_cores: int | None = None
    tdp_source: str = ""


@dataclass(frozen=True)
class Manifest:
    """What a bundle serves and how. ``profile`` holds the measured figures it was exported with
    (``latency_ms_p99``, ``throughput_items_per_s``, ``energy_j_per_item``, ``energy_method``,
    ``run_id``, ...); a cascade's per-model figures are in each :class:`ModelFile`'s
    ``profile``."""

    name: str
    models: tuple[ModelFile, ...]
    version: str = "1"
    schema_version: int = SCHEMA_VERSION
    batching: Batching = field(default_factory=Batching)
    threads: Threads = field(default_factory=Threads)
    cache: Cache = field(default_factory=Cache)
    cascade: Cascade | None = None
    scaling: Scaling = field(default_factory=Scaling)
    slo: Slo = field(default_factory=Slo)
    cost: Cost = field(default_factory=Cost)
    profile: dict[str, Any] = field(default_factory=dict)
    created_at: str = ""
    created_by: str = ""
    energy: Energy = field(default_factory=Energy)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, as written to ``manifest.json`` (schema version first)."""
        doc = asdict(self)
        return {"schema_version": doc.pop("schema_version"), **doc}

    def model(self, role: str) -> ModelFile:
        for m in self.models:
            if m.role == role:
                return m
        raise BundleError(f"{MANIFEST}: no model with role {role!r} in bundle {self.name!r}")


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    manifest: Manifest

    def file(self, relative: str) -> Path:
        return self.path / relative


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_checksums(folder: Path) -> dict[str, str]:
    """Write ``SHA256SUMS`` for every file under ``folder`` (sorted); returns path -> sha256."""
    sums = {rel: sha256_file(folder / rel) for rel in _files(folder) if rel != CHECKSUMS}
    lines = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(sums.items()))
    (folder / CHECKSUMS).write_text(lines, encoding="utf-8")
    return sums


def load_bundle(path: str | Path) -> Bundle:
    """Verify a bundle folder and read its manifest; raises :class:`BundleError` naming the
    first problem (a missing, changed, unlisted or pickled file, or a bad manifest field)."""
    folder = Path(path)
    if not (folder / MANIFEST).is_file():
        raise BundleError(
            f"{folder} is not a bundle: {MANIFEST} is missing; export one with "
            "`workbench export MODEL OUT_DIR`"
        )
    if not (folder / CHECKSUMS).is_file():
        raise BundleError(
            f"{folder / CHECKSUMS} is missing, so the bundle cannot be verified; re-export it"
        )
    listed = read_checksums(folder / CHECKSUMS)
    present = set(_files(folder)) - {CHECKSUMS}
    for rel in sorted(present):
        if rel.lower().endswith(PICKLE_SUFFIXES) or _looks_pickled(folder / rel):
            raise BundleError(
                f"{folder / rel} is a pickle; bundles never hold pickles (loading one runs "
                "code): export the model as ONNX"
            )
    unlisted = sorted(present - set(listed))
    if unlisted:
        raise BundleError(
            f"{folder / unlisted[0]} is not listed in {CHECKSUMS}; remove it or re-export the "
            "bundle"
        )
    for rel, expected in sorted(listed.items()):
        if rel not in present:
            raise BundleError(
                f"bundle is incomplete: {folder / rel} is listed in {CHECKSUMS} but missing; "
                "copy the whole bundle again"
            )
        if sha256_file(folder / rel) != expected:
            raise BundleError(
                f"checksum mismatch for {folder / rel}: the file changed since export "
                "(corrupt or tampered); copy the bundle again or re-export it"
            )
    try:
        raw = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BundleError(f"{folder / MANIFEST} is not valid JSON ({exc}); re-export it") from exc
    try:
        manifest = parse_manifest(raw)
    except BundleError as exc:
        raise BundleError(f"{folder}: {exc}") from exc
    for m in manifest.models:
        if m.file not in listed:
            raise BundleError(f"{MANIFEST}: model file {m.file!r} is not in the bundle")
    return Bundle(folder.resolve(), manifest)


def read_checksums(path: Path) -> dict[str, str]:
    """Parse ``sha256sum`` output into relative path -> hex digest, checking each path."""
    sums: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BundleError(f"{path} is not UTF-8 text ({exc}); re-export the bundle") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise BundleError(f"{path} line {number} is not '<sha256>  <path>'; re-export it")
        sums[check_member_name(rel, where=f"{path} line {number}")] = digest
    return sums


def check_member_name(name: str, where: str) -> str:
    """A relative path inside the bundle: no absolute paths, no ``..``, no backslashes."""
    pure = PurePosixPath(name)
    if not name or pure.is_absolute() or ".." in pure.parts or "\\" in name or name[1:2] == ":":
        raise BundleError(
            f"{where}: unsafe path {name!r} (absolute or with '..'); a bundle only holds "
            "relative paths inside itself"
        )
    return str(pure)


def unpack_archive(archive: str | Path, dest: str | Path) -> Path:
    """Extract a bundle ``.tar.gz`` into ``dest`` and return the bundle folder inside it.

    Refuses members with absolute paths or ``..``, links, devices and other special files before
    extracting anything.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = _extract_checked(tar, archive, dest)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:  # truncated or corrupt
        raise BundleError(
            f"cannot read {archive} as a tar archive ({exc}); copy the archive again"
        ) from exc
    tops = {PurePosixPath(m.name).parts[0] for m in members if PurePosixPath(m.name).parts}
    if (dest / MANIFEST).is_file():
        return dest
    if len(tops) == 1 and (dest / next(iter(tops)) / MANIFEST).is_file():
        return dest / next(iter(tops))
    raise BundleError(f"{archive} holds no {MANIFEST} at its top or in one top folder")


def _extract_checked(tar: tarfile.TarFile, archive: Path, dest: Path) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    for member in members:
        check_member_name(member.name, where=f"{archive} member {member.name!r}")
        if not (member.isfile() or member.isdir()):
            raise BundleError(
                f"{archive} member {member.name!r} is a link or special file; bundles hold "
                "only plain files and folders"
            )
    dest.mkdir(parents=True, exist_ok=True)
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, members=members, filter="data")
    else:  # pragma: no cover - Python < 3.11.4; members were checked above
        tar.extractall(dest, members=members)
    return members


def parse_manifest(raw: Any) -> Manifest:
    """Validate the JSON of ``manifest.json`` into a :class:`Manifest`."""
    if not isinstance(raw, dict):
        raise BundleError(f"{MANIFEST} must hold a JSON object")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{MANIFEST}: schema_version {version!r} is not supported by this runtime (it reads "
            f"version {SCHEMA_VERSION}); serve the bundle with the runtime copied inside it"
        )
    name = _str(raw, "name")
    if not name or "/" in name or name.strip() != name:
        raise BundleError(f"{MANIFEST}: name {name!r} must be non-empty, without '/' or spaces")
    models = raw.get("models")
    if not isinstance(models, list) or not models:
        raise BundleError(f"{MANIFEST}: models must be a non-empty list")
    parsed = tuple(_model(m, i) for i, m in enumerate(models))
    cascade = raw.get("cascade")
    manifest = Manifest(
        name=name,
        version=str(raw.get("version", "1")),
        models=parsed,
        batching=_section(Batching, raw, "batching"),
        threads=_section(Threads, raw, "threads"),
        cache=_section(Cache, raw, "cache"),
        cascade=None if cascade is None else _section(Cascade, raw, "cascade"),
        scaling=_section(Scaling, raw, "scaling"),
        slo=_section(Slo, raw, "slo"),
        cost=_section(Cost, raw, "cost"),
        profile=_object(raw, "profile"),
        created_at=str(raw.get("created_at", "")),
        created_by=str(raw.get("created_by", "")),
        energy=_section(Energy, raw, "energy"),
    )
    _check_values(manifest)
    return manifest


def _model(raw: Any, index: int) -> ModelFile:
    where = f"{MANIFEST}: models[{index}]"
    if not isinstance(raw, dict):
        raise BundleError(f"{where} must be an object with name, file, role, inputs, outputs")
    file = check_member_name(str(raw.get("file", "")), where=f"{where}.file")
    if not file.endswith(".onnx"):
        raise BundleError(f"{where}.file {file!r} must be an .onnx file; bundles serve ONNX only")
    role = str(raw.get("role", "main"))
    if role not in ROLES:
        raise BundleError(f"{where}.role {role!r} must be one of {', '.join(ROLES)}")
    tensors = {}
    for kind in ("inputs", "outputs"):
        items = raw.get(kind) or []
        if not isinstance(items, list):
            raise BundleError(f"{where}.{kind} must be a list of tensors, not {items!r}")
        tensors[kind] = tuple(_tensor(t, f"{where}.{kind}[{i}]") for i, t in enumerate(items))
    profile = raw.get("profile") or {}  # bundles exported before per-model figures have none
    if not isinstance(profile, dict):
        raise BundleError(f"{where}.profile must be an object of figures, not {profile!r}")
    return ModelFile(
        name=str(raw.get("name") or PurePosixPath(file).stem),
        file=file,
        role=role,
        inputs=tensors["inputs"],
        outputs=tensors["outputs"],
        profile=profile,
    )


def _tensor(raw: Any, where: str) -> TensorMeta:
    need = "needs name, datatype and shape (a list of whole numbers, -1 for a variable size)"
    if not isinstance(raw, dict) or not {"name", "datatype", "shape"} <= set(raw):
        raise BundleError(f"{where} {need}; re-export the bundle")
    typical = raw.get("typical_shape")
    if not _dims(raw["shape"]) or not (typical is None or _dims(typical)):
        raise BundleError(f"{where}: shape {raw['shape']!r} / typical_shape {typical!r}: {need}")
    meta = TensorMeta(
        str(raw["name"]),
        str(raw["datatype"]),
        tuple(raw["shape"]),
        None if typical is None else tuple(typical),
    )
    if meta.datatype not in DATATYPES:
        raise BundleError(f"{where}: datatype {meta.datatype!r} is not one of {DATATYPES}")
    return meta


def _dims(value: Any) -> bool:
    return isinstance(value, list) and all(type(d) is int and d >= -1 for d in value)


def _object(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BundleError(f"{MANIFEST}: {key} must be an object, not {value!r}")
    return value


def current_names(key: str, value: dict[str, Any]) -> dict[str, Any]:
    """A copy of section ``key``'s fields with any older name (:data:`RENAMED_FIELDS`) replaced
    by the current one, in the same place; raises ``ValueError`` when both names are given.

    Example
    -------
    >>> current_names("threads", {"intra_op": 2, "instances": 1})
    {'threads': 2, 'instances': 1}
    """
    renamed = RENAMED_FIELDS.get(key, {})
    for old, new in renamed.items():
        if old in value and new in value:
            raise ValueError(
                f"{key} sets both {new!r} and {old!r} (its older name); keep only {new!r}"
            )
    return {renamed.get(name, name): v for name, v in value.items()}


def _section(cls: type, raw: dict[str, Any], key: str) -> Any:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise BundleError(f"{MANIFEST}: {key} must be an object")
    try:
        value = current_names(key, value)
    except ValueError as exc:
        raise BundleError(f"{MANIFEST}: {exc}") from exc
    try:
        return cls(**value)
    except TypeError as exc:
        names = ", ".join(cls.__dataclass_fields__)
        raise BundleError(
            f"{MANIFEST}: {key} has an unknown field ({exc}); fields: {names}"
        ) from exc


def _check_values(m: Manifest) -> None:
    def need(ok: bool, field_name: str, rule: str) -> None:
        if not ok:
            raise BundleError(f"{MANIFEST}: {field_name} {rule}")

    b, t, c, cost = m.batching, m.threads, m.cache, m.cost
    for flag, value in (
        ("batching.enabled", b.enabled),
        ("threads.spinning", t.spinning),
        ("cache.enabled", c.enabled),
    ):
        need(isinstance(value, bool), flag, "must be true or false")
    optional = (
        ("slo.p99_ms", m.slo.p99_ms),
        ("cost.usd_per_million", cost.usd_per_million),
        ("cost.monthly_budget_usd", cost.monthly_budget_usd),
        ("cost.instance_usd_per_h", cost.instance_usd_per_h),
        ("cost.utilisation", cost.utilisation),
    )
    for label, value in optional:
        need(value is None or (_num(value) and value >= 0), label, "must be a number >= 0 or null")
    need(isinstance(cost.method, str), "cost.method", "must be a string")
    e = m.energy
    tdp_ok = e.cpu_tdp_w is None or (_num(e.cpu_tdp_w) and e.cpu_tdp_w > 0)
    need(tdp_ok, "energy.cpu_tdp_w", "must be a number > 0 or null")
    cores_ok = e.logical_cores is None or _whole(e.logical_cores, 1)
    need(cores_ok, "energy.logical_cores", "must be a whole number >= 1 or null")
    for label, text in (("energy.cpu_model", e.cpu_model), ("energy.tdp_source", e.tdp_source)):
        need(isinstance(text, str), label, "must be a string")
    need(_whole(b.max_batch_rows, 1), "batching.max_batch_rows", "must be a whole number >= 1")
    need(_num(b.max_delay_ms) and b.max_delay_ms >= 0, "batching.max_delay_ms", "must be >= 0")
    need(_whole(b.max_queue_rows, 1), "batching.max_queue_rows", "must be a whole number >= 1")
    need(_num(b.queue_target_ms) and b.queue_target_ms >= 0, "batching.queue_target_ms", ">= 0")
    need(_num(b.queue_interval_ms) and b.queue_interval_ms > 0, "batching.queue_interval_ms", "> 0")
    need(_whole(t.threads, 1), "threads.threads", "must be a whole number >= 1")
    need(_whole(t.inter_op, 1), "threads.inter_op", "must be a whole number >= 1")
    need(_whole(t.instances, 1), "threads.instances", "must be a whole number >= 1")
    need(_num(t.inline_below_ms) and t.inline_below_ms >= 0, "threads.inline_below_ms", ">= 0")
    need(_whole(c.max_entries, 1), "cache.max_entries", "must be a whole number >= 1")
    need(_num(c.ttl_s) and c.ttl_s > 0, "cache.ttl_s", "must be > 0 seconds")
    s = m.scaling
    need(_whole(s.min_replicas, 1), "scaling.min_replicas", "must be a whole number >= 1")
    need(
        _whole(s.max_replicas, s.min_replicas),
        "scaling.max_replicas",
        f"must be a whole number >= scaling.min_replicas ({s.min_replicas!r})",
    )
    need(
        _num(s.target_ongoing_requests) and s.target_ongoing_requests > 0,
        "scaling.target_ongoing_requests",
        "must be a number > 0",
    )
    need(
        _whole(s.max_ongoing_requests, 1) and s.max_ongoing_requests >= s.target_ongoing_requests,
        "scaling.max_ongoing_requests",
        f"must be a whole number >= target_ongoing_requests ({s.target_ongoing_requests!r})",
    )
    roles = [x.role for x in m.models]
    if m.cascade is None:
        need(roles == ["main"], "models", "must hold exactly one model with role 'main'")
    else:
        k = m.cascade
        need(sorted(roles) == ["large", "small"], "models", "of a cascade must be small + large")
        need(_num(k.threshold) and 0 <= k.threshold <= 1, "cascade.threshold", "must be in [0, 1]")
        need(k.confidence in CONFIDENCE_METHODS, "cascade.confidence", f"{CONFIDENCE_METHODS}")
        need(k.scores in ("logits", "probabilities"), "cascade.scores", "logits|probabilities")
        for label, value in (("small", k.small), ("large", k.large), ("output", k.output)):
            need(isinstance(value, str), f"cascade.{label}", "must be a string")


def _whole(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _str(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise BundleError(f"{MANIFEST}: {key} must be a string, not {value!r}")
    return value


def _files(folder: Path) -> list[str]:
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part in IGNORED_DIRS for part in rel.parts):
            continue
        if p.is_symlink():
            raise BundleError(f"{p} is a symbolic link; bundles hold only plain files")
        if p.is_file():
            out.append(rel.as_posix())
    return out


def _looks_pickled(path: Path) -> bool:
    """Pickle protocols 2-5 start with 0x80 and the protocol number; ONNX never does."""
    with open(path, "rb") as f:
        head = f.read(2)
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5
