"""The LiteRT seam: the shipped model runs through it, a delegate that cannot load is one line,
and the runtime's start-up notice never reaches the user's terminal."""

import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, run_cli
from fer_edge.model.litert import RuntimeMissing, allocate_tensors, interpreter_api, make_interpreter

MODEL = ROOT / "models" / "fer-cnn-int8.tflite"


def test_the_shipped_model_runs_on_the_threads_asked_for():
    interpreter = make_interpreter(MODEL.read_bytes(), threads=2)
    allocate_tensors(interpreter)
    given = interpreter.get_input_details()[0]
    interpreter.set_tensor(given["index"], np.zeros(given["shape"], given["dtype"]))
    interpreter.invoke()
    assert interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).shape[-1] == 7
    assert interpreter_api()[2] in ("ai-edge-litert", "tflite-runtime")


def test_a_delegate_that_cannot_load_is_one_line():
    with pytest.raises(RuntimeMissing, match="unknown delegate 'gpu'; choose cpu or edgetpu"):
        make_interpreter(MODEL.read_bytes(), delegate="gpu")
    with pytest.raises(RuntimeMissing, match="Edge TPU delegate unavailable: cannot load libedgetpu.so.1") as raised:
        make_interpreter(MODEL.read_bytes(), delegate="edgetpu")   # no Coral and no libedgetpu here
    assert "\n" not in str(raised.value)


def test_bytes_that_are_no_model_are_refused():
    with pytest.raises(ValueError):
        make_interpreter(b"\x00" * 4096)


def test_the_runtimes_notice_is_kept_off_stderr_and_nothing_else_is():
    code = ("import sys; from fer_edge.model.litert import make_interpreter, allocate_tensors; "
            f"allocate_tensors(make_interpreter(open({str(MODEL)!r}, 'rb').read())); "
            "sys.stderr.write('kept\\n')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "kept\n", done.stderr


def test_asking_for_a_coral_that_is_not_there_is_one_line_and_no_traceback(photos, tmp_path):
    done = run_cli("fer-edge", "run", "--source", photos / "single_face.mp4", "--delegate", "edgetpu",
                   "--db", tmp_path / "log.db", timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("Error: ") and "cannot load libedgetpu.so.1" in done.stderr
