"""Home Assistant's discovery configs: topics its pattern accepts and entity ids it would write,
for any device id, and the sensors the model's labels and the device page make."""

import re

import pytest

from fer_edge.core.settings_sections import MqttSection
from fer_edge.outputs.broker import topic_id
from fer_edge.outputs.ha_discovery import discovery_id, discovery_messages, entity_slug

# Home Assistant's discovery topic pattern (homeassistant/components/mqtt/discovery.py)
HA_TOPIC = re.compile(r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config")


@pytest.mark.parametrize("device_id", ["Kiosk 1.lan", "café", "pi/4", "kiosk+#1"])
def test_discovery_topics_fit_home_assistants_pattern_for_any_device_id(device_id):
    messages = discovery_messages(MqttSection(host="x"), device_id, sw_version="1.0")
    assert len(messages) == 8
    for topic, config in messages:
        assert HA_TOPIC.fullmatch(topic.split("/", 1)[1]), topic
        assert re.fullmatch(r"[a-z_]+\.[a-z0-9_]+", config["default_entity_id"]), config["default_entity_id"]
        assert config["state_topic"].count("/") == 2 and not set("+#") & set(config["state_topic"])
    assert "/" not in topic_id(device_id)


def test_ids_as_home_assistant_writes_them():
    assert entity_slug("Café Kiosk-1") == "cafe_kiosk_1"
    assert entity_slug("???") == "device"
    assert discovery_id("kiosk 1.lan") == "kiosk_1_lan"


def test_the_emotion_sensor_speaks_the_models_labels_and_the_device_links_its_page():
    labels = ("angry", "happy", "neutral")
    messages = dict(discovery_messages(MqttSection(host="x", prefix="shop", discovery_prefix="ha"), "k1",
                                       configuration_url="http://k1.lan:8080/", sw_version="2.0", labels=labels))
    emotion = messages["ha/sensor/fer-edge-k1/emotion/config"]
    assert emotion["options"] == list(labels) and emotion["state_topic"] == "shop/k1/view"
    assert emotion["device"]["configuration_url"] == "http://k1.lan:8080/" and emotion["origin"]["sw_version"] == "2.0"
    online = messages["ha/binary_sensor/fer-edge-k1/online/config"]
    assert (online["state_topic"], online["payload_on"]) == ("shop/k1/availability", "online")
