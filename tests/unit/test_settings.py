"""The settings table: one rule for flags and files."""

import pytest

from fer_edge.settings import BY_NAME, ConfigError, Settings, check, from_mapping, resolve


def test_settings_one_rule_for_flags_and_files():
    margin = BY_NAME["model_margin"]
    assert check(margin, 0.2, "x") == 0.2
    for bad in (10, float("nan"), float("inf"), "0.2", True):
        with pytest.raises(ConfigError):
            check(margin, bad, "x")
    assert margin.kind.problem(margin.kind.from_text("10")) == "expected a number in 0..1"
    values = from_mapping({"model": {"threads": 2}, "source": {"path": "a.mp4"}})
    settings = resolve(values, {"source_camera": "0"})
    assert settings.source.camera == "0" and settings.source.path is None and settings.model.threads == 2
    assert Settings({}).mqtt.prefix == "fer-edge" and Settings({}).log.enabled is True


def test_topic_prefixes_with_wildcards_or_empty_levels_are_refused():
    for key in ("mqtt_prefix", "mqtt_discovery_prefix"):
        for bad in ("ha/#", "site/+/kiosk", "/fer-edge", "fer-edge/", "a//b"):
            with pytest.raises(ConfigError):
                check(BY_NAME[key], bad, f"[mqtt] {key}")
        assert check(BY_NAME[key], "shop-3/kiosks", f"[mqtt] {key}") == "shop-3/kiosks"
