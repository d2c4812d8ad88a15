"""`fer-edge service install`: the shipped unit, pointed at this installation's fer-edge."""

import os
import re
import shutil
import sys
from importlib import resources

UNIT_NAME = "fer-edge.service"


def unit_template():
    return resources.files("fer_edge.systemd").joinpath(UNIT_NAME).read_text()


def example_config():
    return resources.files("fer_edge.systemd").joinpath("config.example.toml").read_text()


def installed_executable():
    """The fer-edge script beside this Python (a venv's bin/), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "fer-edge")
    return beside if os.path.exists(beside) else (shutil.which("fer-edge") or beside)


def render_unit(executable, config_path):
    text = unit_template()
    return re.sub(r"^ExecStart=\S+ run --config \S+", f"ExecStart={executable} run --config {config_path}",
                  text, count=1, flags=re.M)


def install(unit_dir, config_path, executable=None):
    """Write the unit; returns (unit path, the commands to run next)."""
    executable = os.path.abspath(executable or installed_executable())
    path = os.path.join(unit_dir, UNIT_NAME)
    os.makedirs(unit_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write(render_unit(executable, config_path))
    config_dir = os.path.dirname(config_path)
    commands = []
    if not os.path.exists(config_path):
        commands.append(f"sudo install -d -m 0755 {config_dir} && "
                        f"{executable} service example-config | sudo tee {config_path} >/dev/null")
    password = os.path.join(config_dir, "mqtt-password")
    if not os.path.exists(password):
        commands.append(f"sudo install -m 600 /dev/null {password}   # the unit loads it as a credential; "
                        "put the MQTT password in it, or leave it empty")
    commands += [f"sudo {executable} config check {config_path}",
                 "sudo systemctl daemon-reload",
                 "sudo systemctl enable --now fer-edge",
                 "systemctl status fer-edge; journalctl -u fer-edge -f"]
    return path, commands
