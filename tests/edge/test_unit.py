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


def test_service_install_puts_the_deploy_key_beside_the_config_and_into_it(tmp_path):
    from fer_edge.deploy.order import PUB_NAME, make_keys

    key_path, pub_path = make_keys(str(tmp_path / "operator"))
    etc = tmp_path / "etc"
    config = etc / "config.toml"
    result = run_cli("fer-edge", "service", "install", "--unit-dir", tmp_path / "units", "--config", config, "--force",
                     "--deploy-key", pub_path)
    assert result.returncode == 0, result.stderr
    copy = etc / PUB_NAME
    assert copy.read_bytes() == Path(pub_path).read_bytes()
    assert f"wrote {copy} and set [deploy] public_key in {config}" in result.stdout
    assert "example-config" not in result.stdout          # the config was started from the example, with the key
    text = config.read_text()
    assert text.startswith(run_cli("fer-edge", "service", "example-config").stdout.rstrip("\n"))
    assert text.endswith(f'\n[deploy]\npublic_key = "{copy}"\n')
    checked = run_cli("fer-edge", "config", "check", config)
    assert checked.returncode == 0, checked.stderr
    # an existing config keeps everything else; installing again sets the key once
    config.write_text('[device]\nid = "kiosk-9"\n\n[deploy]   # deployments\ngroup = "lobby"\npublic_key = "/old.pub"\n\n[log]\nquiet = true\n')
    for _ in range(2):
        result = run_cli("fer-edge", "service", "install", "--unit-dir", tmp_path / "units", "--config", config, "--force",
                         "--deploy-key", pub_path)
        assert result.returncode == 0, result.stderr
    assert config.read_text() == (f'[device]\nid = "kiosk-9"\n\n[deploy]   # deployments\ngroup = "lobby"\npublic_key = "{copy}"\n\n'
                                  '[log]\nquiet = true\n')


def test_service_install_refuses_a_wrong_deploy_key_before_writing_anything(tmp_path):
    from fer_edge.deploy.order import make_keys

    key_path, pub_path = make_keys(str(tmp_path / "operator"))
    for key, message in [(key_path, "a private key; a device takes the public key"),
                         (tmp_path / "missing.pub", "cannot read the deploy public key")]:
        result = run_cli("fer-edge", "service", "install", "--unit-dir", tmp_path / "units", "--config",
                         tmp_path / "etc" / "config.toml", "--force", "--deploy-key", key)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
        assert not (tmp_path / "units").exists() and not (tmp_path / "etc").exists()
    result = run_cli("fer-edge", "service", "install", "--collector", "--unit-dir", tmp_path / "units", "--force",
                     "--deploy-key", pub_path)
    assert result.returncode == 1 and "--deploy-key is for a device's service" in result.stderr
