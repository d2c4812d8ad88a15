"""Each section of the settings as a typed, frozen record. Generated from the one table in
settings.py; do not edit: `cd edge && python -m fer_edge.settings --sections > s.tmp && mv s.tmp fer_edge/core/settings_sections.py`."""

from dataclasses import dataclass
from typing import Dict, Optional, Union


@dataclass(frozen=True)
class SourceSection:
    camera: Optional[str] = None
    path: Optional[str] = None
    fps: Optional[float] = None
    realtime: bool = False
    loop: bool = False
    max_frames: Optional[int] = None


@dataclass(frozen=True)
class DetectorSection:
    type: str = 'auto'
    blazeface_model: Optional[str] = None
    min_face: int = 24


@dataclass(frozen=True)
class ModelSection:
    path: Optional[str] = None
    size: str = 'auto'
    threads: Union[int, str] = 'auto'
    variant: str = 'auto'
    delegate: str = 'cpu'
    margin: Optional[float] = None
    mirror: bool = True
    crops: int = 1


@dataclass(frozen=True)
class LogSection:
    db: Optional[str] = None
    enabled: bool = True
    interval: float = 1.0
    keep_days: float = 90.0
    max_mb: float = 500.0
    json: bool = False
    quiet: bool = False
    save_crops: Optional[str] = None


@dataclass(frozen=True)
class DeviceSection:
    id: Optional[str] = None


@dataclass(frozen=True)
class MqttSection:
    host: Optional[str] = None
    prefix: str = 'fer-edge'
    username: Optional[str] = None
    password_file: Optional[str] = None
    tls_ca: Optional[str] = None
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    durable_emotions: bool = False
    stats_interval: float = 60.0
    discovery: bool = True
    discovery_prefix: str = 'homeassistant'


@dataclass(frozen=True)
class WebSection:
    listen: Optional[str] = None
    token_file: Optional[str] = None
    live_fps: float = 5.0
    max_upload_mb: float = 10.0
    trusted_proxies: Optional[str] = None


@dataclass(frozen=True)
class CadenceSection:
    analyse_fps: float = 6.0
    every_frame: bool = False


@dataclass(frozen=True)
class SessionsSection:
    min_seconds: float = 1.0
    gap_seconds: float = 3.0
    exit_seconds: float = 3.0
    valence: Optional[Dict[str, float]] = None


@dataclass(frozen=True)
class DeploySection:
    public_key: Optional[str] = None
    dir: Optional[str] = None
    group: Optional[str] = None


@dataclass(frozen=True)
class CollectorSection:
    db: Optional[str] = None
    db_password_file: Optional[str] = None
    group: str = 'fer-edge-collectors'
    client_id: Optional[str] = None
    keep_days: float = 0.0


@dataclass(frozen=True)
class RunSection:
    annotate: Optional[str] = None
    show: bool = False
