"""`fer-edge service install`: the shipped unit, pointed at this installation's fer-edge."""

import os
import re
import shutil
import sys
from typing import List, Optional, Tuple
from importlib import resources

UNIT_NAME = "fer-edge.service"
COLLECTOR_UNIT_NAME = "fer-edge-collector.service"


def unit_template(name: str = UNIT_NAME) -> str:
    return resources.files("fer_edge.systemd").joinpath(name).read_text()


def example_config(collector: bool = False) -> str:
    name = "collector.example.toml" if collector else "config.example.toml"
    return resources.files("fer_edge.systemd").joinpath(name).read_text()


def installed_executable() -> str:
    """The fer-edge script beside this Python (a venv's bin/), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "fer-edge")
    return beside if os.path.exists(beside) else (shutil.which("fer-edge") or beside)


def render_unit(executable: str, config_path: str, name: str = UNIT_NAME) -> str:
    return re.sub(r"^ExecStart=\S+ (run|collect) --config \S+", lambda m: f"ExecStart={executable} {m.group(1)} --config {config_path}",
                  unit_template(name), count=1, flags=re.M)


def install(unit_dir: str, config_path: str, executable: Optional[str] = None,
            collector: bool = False) -> Tuple[str, List[str]]:
    """Write the device's unit (or the collector's); returns (unit path, the commands to run next)."""
    executable = os.path.abspath(executable or installed_executable())
    name = COLLECTOR_UNIT_NAME if collector else UNIT_NAME
    path = os.path.join(unit_dir, name)
    os.makedirs(unit_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write(render_unit(executable, config_path, name))
    config_dir = os.path.dirname(config_path)
    commands = []
    if not os.path.exists(config_path):
        example = "example-config --collector" if collector else "example-config"
        commands.append(f"sudo install -d -m 0755 {config_dir} && "
                        f"{executable} service {example} | sudo tee {config_path} >/dev/null")
    for credential, what in [("mqtt-password", "the MQTT password")] + ([("db-password", "the database password")]
                                                                        if collector else []):
        password = os.path.join(config_dir, credential)
        if not os.path.exists(password):
            commands.append(f"sudo install -m 600 /dev/null {password}   # the unit loads it as a credential; "
                            f"put {what} in it, or leave it empty")
    service = name.removesuffix(".service")
    commands += [f"sudo {executable} config check {config_path}",
                 "sudo systemctl daemon-reload",
                 f"sudo systemctl enable --now {service}",
                 f"systemctl status {service}; journalctl -u {service} -f"]
    return path, commands
