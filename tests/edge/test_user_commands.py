"""The commands a new user types in the first hour, run as they type them: each does the
right thing, or says what is wrong in one line and exits non-zero."""

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import run_cli

FER_EDGE = str(Path(sys.executable).parent / "fer-edge")


@pytest.fixture(scope="module")
def real_log(photos, model_path, tmp_path_factory):
    """The log of a real run over a real video: one visitor."""
    db = tmp_path_factory.mktemp("log") / "fer-edge.db"
    result = run_cli("fer-edge", "run", "--source", photos / "single_face.mp4", "--model", model_path, "--db", db, "--quiet")
    assert result.returncode == 0 and "1 sessions" in result.stderr, result.stderr
    return db


def one_line_error(result, *words):
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "ValueError" not in lines[0] and "an error in fer-edge" not in lines[0], lines[0]
    for word in words:
        assert word in lines[0], lines[0]


def test_a_week_is_drawn_in_days_and_a_day_in_hours(real_log, tmp_path):
    pytest.importorskip("matplotlib")
    from fer_edge.fleet.visit_report import build_report, figure, parse_since

    png = tmp_path / "week.png"
    week = run_cli("fer-edge", "report", "--db", real_log, "--since", "7d", "--plot", png, "--json")
    assert week.returncode == 0, week.stderr
    report = json.loads(week.stdout)
    assert report["by"] == "day" and report["total"]["sessions"] == 1
    assert [p["period"] for p in report["periods"]] == [time.strftime("%Y-%m-%d")]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axis = figure(build_report(real_log, parse_since("7d"), "auto")).axes[1]
    assert axis.get_xlim()[1] - axis.get_xlim()[0] >= 7, axis.get_xlim()   # the whole week, in days
    day = json.loads(run_cli("fer-edge", "report", "--db", real_log, "--since", "24h", "--json").stdout)
    assert day["by"] == "hour" and day["total"]["sessions"] == 1


@pytest.mark.parametrize("args, words", [
    (["--since", "yesterday"], ["--since 'yesterday'", "30m, 24h, 7d, 2w, 'today' or 'all'"]),
    (["--since", "7x"], ["expected a span"]),
    (["--plot", "out.txt"], ["--plot out.txt", ".png, .svg or .pdf"]),
    (["--plot", "charts/week.png"], ["--plot charts/week.png: no such folder"]),
])
def test_report_mistakes_are_the_users_in_one_line(real_log, tmp_path, args, words):
    one_line_error(run_cli("fer-edge", "report", "--db", real_log, *args, cwd=tmp_path), *words)
    assert not (tmp_path / "out.txt").exists()


def test_a_span_from_before_1970_is_everything(real_log, tmp_path):
    result = run_cli("fer-edge", "report", "--db", real_log, "--since", "9999999999d", "--plot", tmp_path / "all.png")
    assert result.returncode == 0 and "total: 1 sessions" in result.stdout, result.stderr


def closed_stdout(*args):
    """Run fer-edge with a stdout whose reader is already gone (`| head` that has finished)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([FER_EDGE, *map(str, args)], stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)


def test_a_closed_stdout_ends_quietly():
    result = closed_stdout("config", "show")
    assert result.returncode == 141 and result.stderr == "", result.stderr   # as `yes | head` ends


@pytest.mark.parametrize("closing", [">&-", "2>&-", ">&- 2>&-"])
def test_a_stream_closed_by_the_caller_does_not_stop_the_work(photos, model_path, tmp_path, closing):
    """`fer-edge run ... >&-` (a service manager or a script that closed a stream): the run
    does its work and logs it, and what would have gone to the closed stream is dropped."""
    db = tmp_path / "log.db"
    command = (f"'{FER_EDGE}' run --source '{photos / 'WolfgangLanger_Pexels.mp4'}' --model '{model_path}' "
               f"--db '{db}' --json --max-frames 30 {closing}")
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sqlite3.connect(db).execute("SELECT count(*) FROM emotions").fetchone()[0] >= 1


def test_run_json_into_head_stops_cleanly_and_keeps_what_it_logged(photos, model_path, tmp_path):
    db = tmp_path / "log.db"
    run = subprocess.Popen([FER_EDGE, "run", "--json", "--source", photos / "WolfgangLanger_Pexels.mp4", "--model", model_path,
                            "--db", db, "--realtime", "--log-interval", "0.2"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first_two = [run.stdout.readline(), run.stdout.readline()]   # `| head -2`
    time.sleep(2)   # a visit opens after a second
    run.stdout.close()
    _, stderr = run.communicate(timeout=60)
    assert all(json.loads(line)["track"] >= 1 for line in first_two)
    assert run.returncode == 141 and "Broken pipe" not in stderr and "Error" not in stderr, stderr
    assert "stopped:" in stderr and "1 sessions" in stderr, stderr
    log = sqlite3.connect(db)
    assert log.execute("SELECT count(*) FROM emotions").fetchone()[0] >= 2
    assert log.execute("SELECT ended_by FROM sessions").fetchall() == [("stopped",)]


def test_a_file_run_leaves_the_kiosks_log_alone(photos, model_path, tmp_path):
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    kiosk_log = tmp_path / "state" / "fer-edge" / "fer-edge.db"
    demo = run_cli("fer-edge", "run", "--source", photos / "single_face.mp4", "--model", model_path, "--quiet",
                   extra_env=env)
    assert demo.returncode == 0 and "1 sessions" in demo.stderr, demo.stderr
    assert "a file is not logged into the kiosk's log (--db FILE keeps one)" in demo.stderr
    assert not kiosk_log.exists()
    report = run_cli("fer-edge", "report", extra_env=env)
    assert report.returncode == 1 and "no such database" in report.stderr
    kept = run_cli("fer-edge", "run", "--source", photos / "single_face.mp4", "--model", model_path, "--quiet",
                   "--db", kiosk_log, extra_env=env)
    assert kept.returncode == 0 and f"log {kiosk_log}" in kept.stderr
    assert "total: 1 sessions" in run_cli("fer-edge", "report", extra_env=env).stdout


@pytest.mark.parametrize("name, words", [
    ("out.txt", ["--annotate out.txt", ".mp4 or .webm"]),
    ("no/such/folder/out.mp4", ["no such folder"]),
])
def test_a_wrong_annotate_path_is_said_before_the_source_is_read(photos, model_path, tmp_path, name, words):
    started = time.monotonic()
    result = run_cli("fer-edge", "run", "--source", photos / "WolfgangLanger_Pexels.mp4", "--model", model_path, "--no-db",
                     "--realtime", "--annotate", name, cwd=tmp_path)
    one_line_error(result, *words)
    assert time.monotonic() - started < 20   # the clip plays for longer than that
    assert "frames" not in result.stderr and not (tmp_path / "out.txt").exists()


def test_annotate_never_writes_over_its_source(photos, model_path, tmp_path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes((photos / "single_face.mp4").read_bytes())
    result = run_cli("fer-edge", "run", "--source", clip, "--model", model_path, "--no-db", "--annotate", clip)
    one_line_error(result, "that is the source")
    assert clip.read_bytes() == (photos / "single_face.mp4").read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]   # no probe left behind


def test_annotate_never_writes_over_the_runs_log(photos, model_path, tmp_path):
    log = tmp_path / "kiosk.mp4"
    run_cli("fer-edge", "run", "--source", photos / "single_face.mp4", "--model", model_path, "--quiet", "--db", log)
    before = log.read_bytes()
    result = run_cli("fer-edge", "run", "--source", photos / "single_face.mp4", "--model", model_path, "--db", log,
                     "--annotate", tmp_path / "." / "kiosk.mp4")
    one_line_error(result, "that is the run's log")
    assert log.read_bytes() == before


@pytest.mark.parametrize("target", ["folder", "nowhere", "device"])
def test_annotate_into_what_is_not_a_file_is_said_before_the_source_is_read(photos, model_path, tmp_path, target):
    out = tmp_path / "out.mp4"
    if target == "folder":
        out.mkdir()
    else:
        out.symlink_to(tmp_path / "no" / "such.mp4" if target == "nowhere" else "/dev/full")
    result = run_cli("fer-edge", "run", "--source", photos / "single_face.mp4", "--model", model_path, "--no-db",
                     "--annotate", out)
    one_line_error(result, "not a file a video can be written to")


def test_annotate_webm_plays_in_a_browser(photos, model_path, tmp_path):
    import cv2

    webm = tmp_path / "out.webm"
    result = run_cli("fer-edge", "run", "--source", photos / "single_face.mp4", "--model", model_path, "--no-db",
                     "--quiet", "--annotate", webm)
    assert result.returncode == 0 and "FFMPEG" not in result.stderr, result.stderr
    assert webm.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"   # Matroska/WebM
    video = cv2.VideoCapture(str(webm))
    assert int(video.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") == b"VP80"   # VP8: every browser plays it
    frames = sum(1 for _ in iter(lambda: video.read()[0], False))
    assert frames == int(cv2.VideoCapture(str(photos / "single_face.mp4")).get(cv2.CAP_PROP_FRAME_COUNT))


@pytest.mark.parametrize("text, words", [
    ("camera = 0\n", ["camera = 0 at the top level", "did you mean [source] camera = 0?"]),
    ('db = "kiosk.db"\n', ['did you mean [log] db = "kiosk.db" or [collector] db = "kiosk.db"?']),
    ("cmaera = 0\n", ["cmaera = 0 at the top level", "sections: source, detector"]),
])
def test_a_setting_above_every_section_says_where_it_lives(tmp_path, text, words):
    path = tmp_path / "config.toml"
    path.write_text(text)
    one_line_error(run_cli("fer-edge", "config", "check", path), *words)


@pytest.mark.parametrize("content, words", [
    (b"x = " + b"[" * 3000 + b"]" * 3000 + b"\n", ["not valid TOML", "nested too deep"]),
    (b'[log]\ndb = "kiosk\\u0000.db"\n', ["[log] db: a NUL character"]),
    (b'[device]\nid = "hall\\u001b[2J"\n', ["[device] id: control characters"]),
    (b'[device]\nid = "' + b"k" * 129 + b'"\n', ["[device] id: at most 128 characters"]),
])
def test_a_config_file_a_run_cannot_use_is_one_line(tmp_path, content, words):
    """A device id the collector would refuse in every message is refused at the start."""
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    one_line_error(run_cli("fer-edge", "config", "check", path), *words)


def test_a_config_file_with_a_byte_order_mark_is_read(tmp_path):
    """Windows editors start a UTF-8 file with a byte-order mark; TOML's parser alone calls it invalid."""
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xef\xbb\xbf[source]\ncamera = 0\n")
    checked = run_cli("fer-edge", "config", "check", path)
    assert checked.returncode == 0 and "ok (1 settings)" in checked.stdout, checked.stderr


def test_config_show_writes_a_file_that_reads_back_the_same(tmp_path):
    """A control character in a value is escaped, not printed raw (invalid TOML, and a rewritten terminal)."""
    config = tmp_path / "config.toml"
    config.write_text('[source]\npath = "a\\nb\\tc\\u001b[2Jd\\u007fe\\"q\\\\z \u00fc"\n')
    shown = run_cli("fer-edge", "config", "show", "--config", config)
    assert shown.returncode == 0 and "\x1b" not in shown.stdout, shown.stderr
    again = tmp_path / "shown.toml"
    again.write_text(shown.stdout)
    from fer_edge.settings import tomllib   # the same parser, also on a Python before 3.11

    assert tomllib.loads(again.read_text())["source"]["path"] == tomllib.loads(config.read_text())["source"]["path"]


def test_config_show_says_unset_once_a_line():
    shown = run_cli("fer-edge", "config", "show")
    assert shown.returncode == 0, shown.stderr
    unset = [line for line in shown.stdout.splitlines() if "unset" in line]
    assert unset and all(line.count("unset") == 1 for line in unset), unset
    assert "# path = (unset: the shipped model of [model] size)  # Emotion model (.tflite)" in shown.stdout


def venv_with_this_fer_edge(folder):
    """A venv in `folder` whose fer-edge is this one (its packages through a .pth)."""
    import site
    import sysconfig

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", folder], check=True)
    packages = subprocess.run([f"{folder}/bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    ours = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    Path(packages, "this-fer-edge.pth").write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in ours))
    script = Path(folder, "bin", "fer-edge")
    script.write_text(f"#!{folder}/bin/python\nimport sys\nfrom fer_edge.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("parent, setting", [("/tmp", "PrivateTmp=yes"), ("/home", "ProtectHome=yes")])
def test_service_install_refuses_an_installation_its_sandbox_hides(tmp_path, parent, setting):
    if not os.access(parent, os.W_OK):
        pytest.skip(f"cannot make a venv under {parent} here")
    with tempfile.TemporaryDirectory(dir=parent, prefix="fer-edge-venv-") as folder:
        script = venv_with_this_fer_edge(folder)
        units = tmp_path / "units"
        result = subprocess.run([script, "service", "install", "--unit-dir", units, "--config", "/etc/fer-edge/config.toml"],
                                capture_output=True, text=True, timeout=120)
        one_line_error(result, "not written", f"under {parent}", setting, "/opt/fer-edge")
        assert not (units / "fer-edge.service").exists()
        forced = subprocess.run([script, "service", "install", "--unit-dir", units, "--force"], capture_output=True,
                                text=True, timeout=120)
        assert forced.returncode == 0 and f"ExecStart={script} run" in (units / "fer-edge.service").read_text()
        assert "written all the same (--force)" in forced.stderr


def test_bench_and_eval_show_progress(photos, model_path, fer_csv):
    bench = run_cli("fer-edge", "bench", "--source", photos / "single_face.mp4", "--model", model_path, "--threads", "1",
                    "--warmup", "2", "--max-frames", "10", "--json")
    assert bench.returncode == 0, bench.stderr
    assert "sampling faces from single_face.mp4" in bench.stderr and "benchmarking models x threads: 1 of 1" in bench.stderr
    json.loads(bench.stdout)   # stdout still carries the data alone
    evaluated = run_cli("fer-edge", "eval", "--data", fer_csv, "--model", model_path, "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "reading fer2013.csv.gz (PrivateTest) ..." in evaluated.stderr
    assert "classifying 3589 faces: 4 of 4" in evaluated.stderr
    assert json.loads(evaluated.stdout)["accuracy"] > 0.6
