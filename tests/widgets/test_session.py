"""The shared session: observers, the serving choice, and reopening runs from the store."""

from __future__ import annotations

import pytest

from widgets.session import Session
from workbench.errors import ConfigError, StoreError
from workbench.measure.profiling import profile


def test_publish_sets_and_notifies_and_rejects_unknown_topics(tmp_path) -> None:
    s = Session(tmp_path / "r.sqlite")
    seen = []
    s.subscribe(lambda topic, value: seen.append((topic, value)))
    s.publish("cache_hit_rate", 0.25)
    assert s.cache_hit_rate == 0.25 and seen == [("cache_hit_rate", 0.25)]
    with pytest.raises(ConfigError, match="unknown session topic 'nope'"):
        s.publish("nope", 1)
    with pytest.raises(ConfigError, match="no model chosen"):
        s.serving_choice()


def test_reopen_profile_and_unknown_run(tmp_path) -> None:
    s = Session(tmp_path / "r.sqlite")
    handle = s.load("digits-cnn")
    p = profile(handle, max_seconds=0.1, iterations=10**6, operators=False, store=s.store)
    message = s.reopen(p.run_id)
    assert "no energy figure" in message  # profiled without energy: cost cannot use it
    assert s.figures.run_id == p.run_id and s.reopened.id == p.run_id
    assert list(s.cost_sources().values()) == [p.run_id]
    with pytest.raises(StoreError, match="no run with id 999"):
        s.reopen(999)
    with pytest.raises(StoreError, match="not a whole number"):
        s.reopen("abc")
    # a new model clears results that belonged to the old one
    s.publish("profile", p)
    s.load("digits-cnn")
    assert s.profile is None and s.figures is None
