"""`fer-edge service install`: the shipped unit, pointed at this installation's fer-edge."""

import json
import os
import re
import shutil
import sys
from typing import Callable, List, Optional, Tuple
from importlib import resources

from ..core.atomic import write_atomically
from ..core.errors import UserError

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

UNIT_NAME = "fer-edge.service"
COLLECTOR_UNIT_NAME = "fer-edge-collector.service"
# What the unit's sandbox hides from the service: these folders are empty (or absent) there.
HIDING = (("ProtectHome=yes", ("/home", "/root", "/run/user")), ("PrivateTmp=yes", ("/tmp", "/var/tmp")))


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


def needed_paths(executable: str, config_path: str) -> List[Tuple[str, str]]:
    """(what, path) of everything the service reads to start: the script, the Python it runs
    (the venv and the interpreter behind it), fer-edge's code and the config."""
    import fer_edge

    return [("fer-edge", executable), ("its venv", sys.prefix), ("its Python", os.path.realpath(sys.executable)),
            ("Python's library", os.path.realpath(sys.base_prefix)),
            ("fer-edge's code", os.path.realpath(os.path.dirname(fer_edge.__file__))), ("the config", config_path)]


def hidden_from_service(unit: str, paths: List[Tuple[str, str]]) -> Optional[str]:
    """Why the service could not start from these paths (the first one its sandbox hides), or None."""
    for what, path in paths:
        # a link into a hidden folder (/etc/fer-edge -> /home/...) is hidden too: the service cannot follow it
        for absolute in dict.fromkeys((os.path.abspath(path), os.path.realpath(path))):
            where = os.path.abspath(path) + ("" if absolute == os.path.abspath(path) else f" (a link to {absolute})")
            for setting, roots in HIDING:
                root = next((r for r in roots if absolute == r or absolute.startswith(r + "/")), None)
                if root and re.search(rf"^{re.escape(setting)}\s*$", unit, re.M):
                    return (f"{what} is {where}, under {root}, which the unit's {setting} hides from the service; "
                            f"install fer-edge outside /home, /root and /tmp (in the clone: sudo python3 -m venv "
                            f"/opt/fer-edge && sudo /opt/fer-edge/bin/pip install .) and run /opt/fer-edge/bin/fer-edge "
                            f"service install, or pass --force and adjust the unit yourself")
    return None


def install_deploy_key(public_key: str, config_path: str) -> str:
    """Copy the fleet's public deploy key beside the config and set `[deploy] public_key` to
    the copy (the config is started from the example when there is none); says what it did."""
    from ..deploy.order import PUB_NAME, load_public_key

    load_public_key(public_key)
    with open(public_key, "rb") as f:
        key = f.read()
    config_dir = os.path.dirname(os.path.abspath(config_path))
    os.makedirs(config_dir, mode=0o755, exist_ok=True)
    copy = os.path.join(config_dir, PUB_NAME)
    if os.path.abspath(public_key) != copy:
        write_atomically(copy, key, mode=0o644)
    try:
        with open(config_path, encoding="utf-8-sig") as f:
            text = f.read()
        mode = os.stat(config_path).st_mode & 0o777
    except FileNotFoundError:
        text, mode = example_config(), 0o644
    written = with_deploy_key(text, copy)
    try:
        set_to = tomllib.loads(written).get("deploy", {}).get("public_key")
    except (tomllib.TOMLDecodeError, AttributeError):
        set_to = None
    if set_to != copy:
        raise UserError(f"{config_path}: could not set [deploy] public_key in it (not plain TOML sections?); "
                        f"set public_key = {json.dumps(copy)} under [deploy] yourself")
    write_atomically(config_path, written.encode(), mode=mode)
    return f"wrote {copy} and set [deploy] public_key in {config_path}"


def with_deploy_key(text: str, key_path: str) -> str:
    """The config `text` with `[deploy] public_key` set to `key_path`, everything else as it was."""
    setting = f"public_key = {json.dumps(key_path)}"
    lines = text.splitlines()
    for at, line in enumerate(lines):
        if re.match(r"\s*\[deploy\]\s*(#.*)?$", line):
            end = at + 1
            while end < len(lines) and not re.match(r"\s*\[", lines[end]):
                if re.match(r"\s*public_key\s*=", lines[end]):
                    lines[end] = setting
                    return "\n".join(lines) + "\n"
                end += 1
            lines.insert(at + 1, setting)
            return "\n".join(lines) + "\n"
    return text.rstrip("\n") + f"\n\n[deploy]\n{setting}\n"


def install(unit_dir: str, config_path: str, executable: Optional[str] = None,
            collector: bool = False, force: bool = False, warn: Optional[Callable[[str], None]] = None,
            deploy_key: Optional[str] = None, done: Optional[List[str]] = None) -> Tuple[str, List[str]]:
    """Write the device's unit (or the collector's); returns (unit path, the commands to run
    next). A unit that could not start this installation is refused, unless `force`. With
    `deploy_key` the device takes signed models: the key goes beside the config, and into it
    (what was done is added to `done`)."""
    if deploy_key and collector:
        raise UserError("--deploy-key is for a device's service; the collector takes no models")
    if deploy_key:
        from ..deploy.order import load_public_key

        load_public_key(deploy_key)   # a wrong key is refused before anything is written
    executable = os.path.abspath(executable or installed_executable())
    name = COLLECTOR_UNIT_NAME if collector else UNIT_NAME
    path = os.path.join(unit_dir, name)
    unit = render_unit(executable, config_path, name)
    hidden = hidden_from_service(unit, needed_paths(executable, config_path))
    if hidden and not force:
        raise UserError(f"not written: {hidden}")
    if hidden and warn:
        warn(f"written all the same (--force): {hidden.split('; install')[0]}")
    os.makedirs(unit_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write(unit)
    config_dir = os.path.dirname(config_path)
    commands = []
    if deploy_key:
        said = install_deploy_key(deploy_key, config_path)
        if done is not None:
            done.append(said)
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


def install_service(unit_dir: str, config_path: Optional[str], collector: bool = False, force: bool = False,
                    warn: Optional[Callable[[str], None]] = None, deploy_key: Optional[str] = None) -> str:
    """`fer-edge service install`: the unit written (config at /etc/fer-edge/config.toml, or
    collector.toml, unless given), and the commands to run next, as the user reads them."""
    config_path = config_path or f"/etc/fer-edge/{'collector' if collector else 'config'}.toml"
    done: List[str] = []
    try:
        path, commands = install(unit_dir, config_path, collector=collector, force=force, warn=warn,
                                 deploy_key=deploy_key, done=done)
    except PermissionError as exc:
        raise UserError(f"cannot write {exc.filename or unit_dir}: run with sudo, or pass --unit-dir") from None
    return "\n".join([f"wrote {path}", *done, "next:", *(f"  {command}" for command in commands)])
