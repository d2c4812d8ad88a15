"""Home Assistant MQTT discovery: the retained configs (topic, payload) that make a device and
its sensors appear in Home Assistant, under

    homeassistant/<component>/fer-edge-<device>/<what>/config

sent on every connection and again when Home Assistant says homeassistant/status = online."""

import re
import unicodedata
from typing import Dict, List, Optional, Sequence, Tuple

from ..core.labels import LABELS
from ..core.settings_sections import MqttSection
from .broker import topic_id


def installed_version() -> Optional[str]:
    """fer-edge's version, for Home Assistant's device page (None when run from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fer-edge")
    except PackageNotFoundError:
        return None


def discovery_id(device_id: str) -> str:
    """The device id as Home Assistant's discovery node id allows it: [a-zA-Z0-9_-]+."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", device_id) or "_"


def entity_slug(device_id: str) -> str:
    """The device id as an entity id part, as Home Assistant would write it: [a-z0-9_],
    accents dropped ('café' -> 'cafe'), no repeated or edge underscores."""
    ascii_id = unicodedata.normalize("NFKD", device_id).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "_", ascii_id).strip("_") or "device"


def discovery_messages(s: MqttSection, device_id: str, configuration_url: Optional[str] = None,
                       model_name: str = "fer-edge", sw_version: Optional[str] = None,
                       expire_after: int = 30, labels: Sequence[str] = LABELS) -> List[Tuple[str, dict]]:
    """Home Assistant MQTT discovery configs (topic, payload) for this device. The emotion
    sensor is an enum of the model's `labels`; it becomes unavailable `expire_after` seconds
    after the last face left."""
    base = f"{s.prefix}/{topic_id(device_id)}"
    node, slug = discovery_id(device_id), entity_slug(device_id)
    device = {"identifiers": [f"fer-edge-{device_id}"], "name": f"fer-edge {device_id}",
              "manufacturer": "fer-edge", "model": model_name}
    if sw_version:
        device["sw_version"] = sw_version
    if configuration_url:
        device["configuration_url"] = configuration_url
    origin = {"name": "fer-edge", "support_url": "https://github.com/fer-edge/fer-edge"}
    if sw_version:
        origin["sw_version"] = sw_version
    availability = {"availability_topic": f"{base}/availability", "payload_available": "online",
                    "payload_not_available": "offline"}
    diagnostic = {"entity_category": "diagnostic", "state_topic": f"{base}/stats"}
    entities: Dict[Tuple[str, str], dict] = {
        ("sensor", "emotion"): dict(name="Emotion", state_topic=f"{base}/view", device_class="enum",
                                    options=list(labels), value_template="{{ value_json.label }}",
                                    icon="mdi:emoticon-outline",
                                    json_attributes_topic=f"{base}/view",
                                    json_attributes_template="{{ dict(value_json.probs, confidence="
                                                             "value_json.confidence) | tojson }}",
                                    expire_after=expire_after),
        ("sensor", "people"): dict(name="People in view", state_topic=f"{base}/view",
                                   value_template="{{ value_json.people }}", state_class="measurement",
                                   icon="mdi:account-eye", json_attributes_topic=f"{base}/view",
                                   json_attributes_template="{{ {'visits_in_progress': value_json.visits | count}"
                                                            " | tojson }}"),
        ("sensor", "satisfaction"): dict(name="Last visitor satisfaction", state_topic=f"{base}/session",
                                         value_template="{{ value_json.satisfaction }}", unit_of_measurement="%",
                                         state_class="measurement", icon="mdi:emoticon-happy-outline",
                                         json_attributes_topic=f"{base}/session",
                                         json_attributes_template=(
                                             "{{ {'exit_emotion': value_json.exit_emotion, 'dominant': "
                                             "value_json.dominant, 'duration': value_json.duration, "
                                             "'ended_by': value_json.ended_by, 'exit_probs': value_json.exit_probs}"
                                             " | tojson }}")),
        ("sensor", "sessions_today"): dict(name="Visitors today", state_topic=f"{base}/stats",
                                           value_template="{{ value_json.sessions_today }}",
                                           state_class="total_increasing", icon="mdi:account-multiple"),
        ("sensor", "fps"): dict(diagnostic, name="Frames per second", value_template="{{ value_json.fps }}",
                                unit_of_measurement="fps", state_class="measurement", icon="mdi:speedometer"),
        ("sensor", "outbox"): dict(diagnostic, name="Outbox backlog", value_template="{{ value_json.outbox_pending }}",
                                   unit_of_measurement="messages", state_class="measurement", icon="mdi:tray-full"),
        ("event", "visit"): dict(name="Visit", state_topic=f"{base}/session", event_types=["visit"],
                                 icon="mdi:account-arrow-right"),
    }
    prefix = s.discovery_prefix
    messages = []
    for (component, key), entity in entities.items():
        payload = dict(entity, unique_id=f"fer-edge-{device_id}-{key}", default_entity_id=f"{component}.fer_edge_{slug}_{key}",
                       device=device, origin=origin, **availability)
        messages.append((f"{prefix}/{component}/fer-edge-{node}/{key}/config", payload))
    payload = dict(name="Online", state_topic=f"{base}/availability", payload_on="online", payload_off="offline",
                   device_class="connectivity", unique_id=f"fer-edge-{device_id}-online",
                   default_entity_id=f"binary_sensor.fer_edge_{slug}_online", device=device, origin=origin)
    messages.append((f"{prefix}/binary_sensor/fer-edge-{node}/online/config", payload))
    return messages

