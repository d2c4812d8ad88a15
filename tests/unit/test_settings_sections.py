"""The typed sections are the settings table's, generated and frozen."""

import pytest

from conftest import ROOT


def test_the_typed_sections_are_generated_from_the_settings():
    from fer_edge.settings import Settings, sections_source

    path = ROOT / "edge" / "fer_edge" / "core" / "settings_sections.py"
    assert path.read_text() == sections_source(), \
        "settings_sections.py is stale: cd edge && python -m fer_edge.settings --sections > s.tmp && mv s.tmp fer_edge/core/settings_sections.py"
    settings = Settings({"mqtt_host": "broker.lan", "model_threads": 2})
    assert settings.mqtt.host == "broker.lan" and settings.model.threads == 2 and settings.log.keep_days == 90.0
    with pytest.raises(AttributeError):
        settings.mqtt.host = "elsewhere"  # frozen: what was resolved is what every part reads
