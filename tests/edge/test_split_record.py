"""A run's split.json crosses a trust boundary (a folder handed over, edited by hand): every
malformed form is one line from the command that reads it."""

import json
import os

import pytest

from conftest import run_cli
from fer_edge.model.datasets import DatasetError, read_split_record

GOOD = {"root": "/data/own", "layout": "train/val/test", "labels": ["happy", "sad"], "detect": False,
        "train": ["happy/1.png"], "val": ["sad/2.png"], "test": ["happy/3.png"]}


@pytest.mark.parametrize("text, reason", [
    ("[" * 100_000 + "]" * 100_000, "nested too deep"),
    (json.dumps(dict(GOOD, detect="false")), "detect missing or malformed"),
    (json.dumps(dict(GOOD, test=[1, 2])), "test missing or malformed"),
    ("NaN", "not a JSON object"),
])
def test_a_malformed_split_record_is_a_dataset_error(tmp_path, text, reason):
    (tmp_path / "split.json").write_text(text)
    with pytest.raises(DatasetError, match=reason):
        read_split_record(str(tmp_path / "split.json"))


def test_the_record_a_run_writes_is_read(tmp_path):
    (tmp_path / "split.json").write_text(json.dumps(GOOD))
    assert read_split_record(str(tmp_path / "split.json")) == GOOD


def test_eval_on_a_deeply_nested_split_json_is_one_line(tmp_path):
    (tmp_path / "split.json").write_text("[" * 100_000 + "]" * 100_000)
    result = run_cli("fer-edge", "eval", "--data", tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"Error: {tmp_path}/split.json: not a fer-train split record "
                                                  "(nested too deep)"], result.stderr


def test_eval_on_a_pipe_is_one_line_not_a_wait_for_ever(tmp_path):
    """A named pipe nobody writes (a split.json made one) was opened and waited on for ever;
    `--data <(cat set.tar.gz)` said 'Illegal seek'."""
    (tmp_path / "run").mkdir()
    os.mkfifo(tmp_path / "run" / "split.json")
    result = run_cli("fer-edge", "eval", "--data", tmp_path / "run" / "split.json", timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"Error: {tmp_path}/run/split.json: a pipe or device, not a file "
                                                  "or folder (save the data to a file first)"], result.stderr
