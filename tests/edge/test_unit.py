"""`fer-edge service install`: units written for this installation that systemd verifies, and
configs the unit's sandbox would hide from the service named before it starts."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, run_cli

UNIT = ROOT / "systemd" / "fer-edge.service"


def test_the_collectors_unit_verifies_is_hardened_and_installs(tmp_path):
    collector_unit = UNIT.parent / "fer-edge-collector.service"
    security = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(collector_unit)], capture_output=True,
                              text=True)
    line = [text for text in security.stdout.splitlines() if "Overall exposure level" in text][0]
    print(line)
    assert float(line.split(":")[1].split()[0]) <= 2.5
    result = run_cli("fer-edge", "service", "install", "--collector", "--unit-dir", tmp_path, "--config",
                     tmp_path / "collector.toml", "--force")   # a config under /tmp: hidden from the service
    assert result.returncode == 0 and "written all the same (--force)" in result.stderr, result.stderr
    unit = (tmp_path / "fer-edge-collector.service").read_text()
    assert f"ExecStart={Path(sys.executable).parent / 'fer-edge'} collect --config {tmp_path / 'collector.toml'}" in unit
    assert "systemctl enable --now fer-edge-collector" in result.stdout and "db-password" in result.stdout
    verify = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "fer-edge-collector.service")],
                            capture_output=True, text=True)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr
    example = tmp_path / "example.toml"
    example.write_text(run_cli("fer-edge", "service", "example-config", "--collector").stdout)
    checked = run_cli("fer-edge", "config", "check", example)
    assert checked.returncode == 0, checked.stderr


def test_service_install_writes_a_unit_for_this_installation(tmp_path):
    result = run_cli("fer-edge", "service", "install", "--unit-dir", tmp_path, "--config", tmp_path / "config.toml",
                     "--force")   # a config under /tmp: hidden from the service (test_user_commands: the refusal)
    assert result.returncode == 0 and "written all the same (--force)" in result.stderr, result.stderr
    unit = (tmp_path / "fer-edge.service").read_text()
    executable = str(Path(sys.executable).parent / "fer-edge")
    assert f"ExecStart={executable} run --config {tmp_path / 'config.toml'}" in unit
    assert "systemctl enable --now fer-edge" in result.stdout
    verify = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "fer-edge.service")], capture_output=True, text=True)
    assert verify.returncode == 0 and not verify.stderr.strip(), verify.stderr


def test_a_config_linked_into_a_hidden_folder_is_hidden_from_the_service(tmp_path):
    """/etc/fer-edge -> /tmp/...: the path looks visible, but the service cannot follow the link."""
    import tempfile

    from fer_edge.tools.unit import hidden_from_service, unit_template

    (tmp_path / "config.toml").write_text("[source]\ncamera = 0\n")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as outside:   # not hidden by the unit's sandbox
        link = Path(outside, "fer-edge")
        link.symlink_to(tmp_path)
        assert hidden_from_service(unit_template(), [("the config", outside)]) is None
        why = hidden_from_service(unit_template(), [("the config", str(link / "config.toml"))])
    assert why and f"(a link to {os.path.realpath(tmp_path)}/config.toml)" in why and "PrivateTmp=yes" in why, why
