import sqlite3

import pytest

from workbench.errors import StoreError
from workbench.measure.store import RunStore


def test_round_trip_keeps_every_field(tmp_path):
    path = tmp_path / "runs.sqlite"
    with RunStore(path) as store:
        run_id = store.add(
            "profile",
            model="m",
            fingerprint="f" * 64,
            config={"batch_size": 4, "backend": "onnxruntime"},
            metrics={"latency_ms_p99": 1.25, "energy_method": "estimated"},
            environment={"cpu_model": "x"},
            sweep_id="s1",
            details={"operators": [{"op": "Conv", "share": 1.0}]},
        )
    with RunStore(path) as store:  # a new connection reads what the first one committed
        run = store.get(run_id)
    assert run.model == "m" and run.fingerprint == "f" * 64 and run.sweep_id == "s1"
    assert run.config == {"batch_size": 4, "backend": "onnxruntime"}
    assert run.metrics == {"latency_ms_p99": 1.25, "energy_method": "estimated"}
    assert run.environment == {"cpu_model": "x"}
    assert run.details["operators"][0]["op"] == "Conv"
    assert run.created_at.endswith("+00:00")


def test_wal_mode_and_filters_to_frame(tmp_path):
    path = tmp_path / "runs.sqlite"
    store = RunStore(path)
    for i, model in enumerate(["a", "b", "a"]):
        store.add(
            "profile",
            model=model,
            fingerprint="x",
            config={"batch_size": i},
            metrics={"throughput_items_per_s": float(i)},
        )
    store.add("other", model="a", fingerprint="x", config={}, metrics={})
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    frame = store.to_frame(model="a", kind="profile")
    assert list(frame["batch_size"]) == [2, 0]  # newest first
    assert list(frame["throughput_items_per_s"]) == [2.0, 0.0]
    assert len(store.to_frame(limit=2)) == 2
    store.close()


def test_unknown_run_id_names_the_fix(tmp_path):
    with (
        RunStore(tmp_path / "r.sqlite") as store,
        pytest.raises(StoreError, match="workbench runs"),
    ):
        store.get(42)


def test_unopenable_store_is_a_clear_error(tmp_path):
    bad = tmp_path / "not-a-db.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="WORKBENCH_DB"):
        RunStore(bad)
