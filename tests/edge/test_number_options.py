"""Numbers a user types on fer-train's and fer-edge's command lines: nan passes every range
check click makes, so each float option refuses it in one line before any work."""

import pytest

from conftest import ROOT, run_cli

README = ROOT / "README.md"   # never read: the options are refused first


@pytest.mark.parametrize("command, option, value, says", [
    (("fer-train", "fit", "--data", README, "--out", "OUT"), "--lr", "nan", "'nan' is not a finite number"),
    (("fer-train", "fit", "--data", README, "--out", "OUT"), "--lr", "0", "0.0 is not in the range x>0"),
    (("fer-train", "fit", "--data", README, "--out", "OUT"), "--distill-weight", "nan", "'nan' is not a finite number"),
    (("fer-edge", "eval", "--data", README, "--detect"), "--margin", "nan", "'nan' is not a finite number"),
])
def test_nan_and_out_of_range_numbers_are_refused_in_one_line(command, option, value, says, tmp_path):
    command = tuple(tmp_path / "out" if part == "OUT" else part for part in command)
    result = run_cli(*command, option, value)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"Error: Invalid value for '{option}': {says}.", result.stderr
    assert not (tmp_path / "out").exists()
