"""`fer-edge demo` and `bash demo.sh`, the README's first command: the real photo from the real
package registry, the real pipeline, and a fresh copy of the repository run by a user who is
not root, with an empty home and no ../shared."""

import hashlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Tuple

import pytest

from conftest import run_cli
from fer_edge.core.wheel_files import FetchError, unpack_checked
from fer_edge.tools import demo

REPO = Path(__file__).resolve().parents[2]


def demo_env(home: Path) -> dict:
    """A user whose home is empty: nothing fetched, no log of their own yet."""
    return {"HOME": str(home), "XDG_DATA_HOME": "", "XDG_STATE_HOME": "", "FER_EDGE_DETECTORS": "",
            "STATE_DIRECTORY": ""}


def assert_demo_output(result) -> None:
    assert result.returncode == 0, result.stderr[-2000:]
    readings = re.findall(r"frame +\d+ face #\d+ +happy +\d+\.\d%", result.stdout)
    assert len(readings) >= 3, result.stdout
    assert re.search(r"^session \w+: [4-6] s, mostly happy, left happy, satisfaction \d+$", result.stdout, re.M), result.stdout
    assert "total: 1 sessions" in result.stdout
    assert re.search(r"done: 100 frames, \d+ faces, 1 tracks, .* 1 sessions", result.stderr), result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("home")


def test_demo_reads_a_face_and_a_visit_and_leaves_the_kiosk_log_alone(home):
    result = run_cli("fer-edge", "demo", extra_env=demo_env(home))
    assert_demo_output(result)
    photo = home / ".local/share/fer-edge/demo/astronaut.png"
    assert hashlib.sha256(photo.read_bytes()).hexdigest() == demo.PHOTO.sha256
    assert not (home / ".local/state").exists(), "the demo wrote into the kiosk's own log"


def test_a_damaged_stored_photo_is_fetched_again(home):
    photo = home / ".local/share/fer-edge/demo/astronaut.png"
    if not photo.exists():
        run_cli("fer-edge", "demo", extra_env=demo_env(home))
    photo.write_bytes(photo.read_bytes()[:1000])
    result = run_cli("fer-edge", "demo", extra_env=demo_env(home))
    assert_demo_output(result)
    assert "fetching the demo photo" in result.stderr
    assert hashlib.sha256(photo.read_bytes()).hexdigest() == demo.PHOTO.sha256


def test_the_demo_writes_its_annotated_clip_where_asked(home, tmp_path):
    result = run_cli("fer-edge", "demo", "--annotate", tmp_path / "demo.mp4", extra_env=demo_env(home))
    assert_demo_output(result)
    assert (tmp_path / "demo.mp4").stat().st_size > 10_000


def test_a_photo_with_the_wrong_sha256_is_refused(tmp_path):
    import zipfile

    wheel = tmp_path / "fake.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(demo.PHOTO.member, b"not the astronaut")
    with pytest.raises(FetchError, match="is not the pinned"):
        unpack_checked(str(wheel), [demo.PHOTO], str(tmp_path / "store"))
    assert not (tmp_path / "store").exists()


def test_offline_the_demo_fails_in_one_line(tmp_path):
    env = dict(demo_env(tmp_path), PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:1/simple",
               PIP_NO_CACHE_DIR="1", PIP_RETRIES="0", PIP_TIMEOUT="2", PIP_FIND_LINKS="")
    result = run_cli("fer-edge", "demo", extra_env=env)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "cannot download scikit-image==0.26.0" in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_data_folder_that_cannot_be_written_is_one_line_before_any_download(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    env = dict(demo_env(tmp_path), XDG_DATA_HOME=str(tmp_path / "a-file"), PIP_INDEX_URL="http://127.0.0.1:9/simple")
    result = run_cli("fer-edge", "demo", extra_env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"Error: cannot store files in {tmp_path}/a-file/fer-edge/demo "
                                          "(Not a directory): set XDG_DATA_HOME to a folder you can write"], result.stderr


def copy_for_a_user(prefix: str) -> Tuple[Path, Path, Path]:
    """(folder, repo, home): a fresh copy and an empty home in a new folder outside pytest's
    root-only one, owned by `nobody` when the tests run as root."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(folder, 0o755)
    repo, home = fresh_copy(folder), folder / "home"
    home.mkdir()
    if os.getuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for path in [folder, *folder.rglob("*")]:
            os.lchown(path, nobody.pw_uid, nobody.pw_gid)
    return folder, repo, home


def fresh_copy(folder: Path) -> Path:
    """The files a clone of this tree holds (tracked, and new files git does not ignore)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    copy = folder / "fer-edge"
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


def as_a_user(command: list) -> list:
    """Run as `nobody` when the tests run as root: the first command must need no root."""
    if os.getuid() != 0:
        return command
    nobody = pwd.getpwnam("nobody")
    return ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", *command]


@pytest.mark.slow
def test_the_readmes_first_command_works_from_a_fresh_copy_without_root_or_shared_data():
    block = re.search(r"```sh\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    command = next(line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#"))
    assert command == "bash demo.sh", f"the README's first command is now {command!r}: test that one"
    folder, repo, home = copy_for_a_user("fer-edge-fresh-")
    try:
        assert not (repo.parent / "shared").exists()
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
        for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_CONFIG_FILE", "PIP_TRUSTED_HOST"):
            if name in os.environ:   # the registry this machine is told to use
                env[name] = os.environ[name]
        started = time.monotonic()
        result = subprocess.run(as_a_user(["bash", "demo.sh"]), cwd=repo, env=env, capture_output=True, text=True,
                                timeout=900)
        took = time.monotonic() - started
        assert_demo_output(result)
        assert not (home / ".local/state").exists()
        print(f"bash demo.sh from a fresh copy: {took:.1f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_demo_sh_completes_a_venv_cut_off_and_says_offline_in_one_line(tmp_path):
    """A venv made up to its python (demo.sh stopped while making it) is made again over
    itself, not used without pip for ever; pip's failure is one line, its output kept."""
    folder, repo, home = copy_for_a_user("fer-edge-cut-")
    try:
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8",
               "PIP_CONFIG_FILE": os.devnull, "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_FIND_LINKS": "",
               "PIP_NO_CACHE_DIR": "1", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2"}
        subprocess.run(as_a_user(["python3", "-m", "venv", "--without-pip", ".venv"]), cwd=repo, env=env, check=True)
        result = subprocess.run(as_a_user(["bash", "demo.sh"]), cwd=repo, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("demo.sh: cannot install fer-edge"), \
            result.stderr
        assert "No matching distribution" in result.stderr and "pip-install.log" in result.stderr
        assert subprocess.run([str(repo / ".venv/bin/python"), "-m", "pip", "--version"], capture_output=True).returncode == 0
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_demo_sh_never_removes_a_venv_it_did_not_make(tmp_path):
    """A .venv of the user's own without pip (uv makes them so), on a Python that cannot make
    venvs (Debian without python3-venv, stood in by a wrapper): said in one line, kept."""
    repo = fresh_copy(tmp_path)
    subprocess.run(["python3", "-m", "venv", "--without-pip", str(repo / ".venv")], check=True)
    (repo / ".venv" / "mine").write_text("the user's")
    no_venv = tmp_path / "python-without-venv"
    no_venv.write_text('#!/bin/sh\nif [ "$1 $2" = "-m venv" ]; then echo "ensurepip is not available" >&2; exit 1; fi\n'
                       'exec python3 "$@"\n')
    no_venv.chmod(0o755)
    result = subprocess.run(["bash", "demo.sh"], cwd=repo, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, PYTHON=str(no_venv)))
    assert result.returncode == 1
    assert result.stderr.strip().endswith("cannot make a venv; on Debian or Ubuntu: sudo apt install python3-venv"), \
        result.stderr
    assert (repo / ".venv" / "mine").read_text() == "the user's"


@pytest.mark.slow
@pytest.mark.needs_broker
def test_demo_shows_home_assistant_its_device_and_visit_through_a_broker_with_users(home, tmp_path):
    """docs/home-assistant.md's check: a broker with a password file, the demo as user `kiosk`."""
    from mqtt_helpers import Broker, Recorder

    broker = Broker(tmp_path).with_passwords({"kiosk": "right"}, anonymous=True)   # anonymous: the test's own recorder
    (tmp_path / "password").write_text("right")
    (tmp_path / "wrong").write_text("wrong")
    broker.start()
    recorder = Recorder(broker.port, topics=("homeassistant/#", "fer-edge/#"))
    try:
        flags = ["--mqtt", f"127.0.0.1:{broker.port}", "--mqtt-username", "kiosk", "--mqtt-password-file"]
        started = time.monotonic()
        result = run_cli("fer-edge", "demo", *flags, tmp_path / "password", extra_env=demo_env(home))
        assert_demo_output(result)
        assert time.monotonic() - started >= 9, "with --mqtt the clip plays in real time"
        assert "MQTT connected, 0 messages waiting in the outbox" in result.stderr
        assert Recorder.wait_for(lambda: recorder.json_on("/session"), 10)
        configs = [topic for _, topic, _, _ in recorder.messages if topic.startswith("homeassistant/")]
        assert len(set(configs)) == 8 and all("/fer-edge-demo/" in topic for topic in configs)
        visit = recorder.json_on("fer-edge/demo/session")[0]
        assert visit["device"] == "demo" and visit["satisfaction"] > 50
        assert any(view.get("label") == "happy" for view in recorder.json_on("fer-edge/demo/view"))

        refused = run_cli("fer-edge", "demo", *flags, tmp_path / "wrong", extra_env=demo_env(home))
        assert "refused the connection: Not authorized" in refused.stderr
    finally:
        recorder.close()
        broker.stop()
