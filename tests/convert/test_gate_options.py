"""fer-convert's gate limits and crop margin are numbers a user types: nan compares false
with every limit, so it must be refused, not turn the int8 gate off."""

import pytest

from conftest import ROOT, run_cli


@pytest.mark.parametrize("option, value, says", [
    ("--max-loss", "nan", "'nan' is not a finite number"),
    ("--max-loss", "inf", "'inf' is not a finite number"),
    ("--max-loss", "-1", "-1.0 is not in the range x>=0"),
    ("--max-loss-faces", "-3", "-3 is not in the range x>=0"),
    ("--margin", "nan", "'nan' is not a finite number"),
])
def test_a_limit_that_is_no_number_is_refused_before_any_work(option, value, says, tmp_path):
    readme = ROOT / "README.md"   # never read: the options are refused first
    result = run_cli("fer-convert", readme, "--data", readme, option, value, "-o", tmp_path / "x.tflite")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"Error: Invalid value for '{option}': {says}.", result.stderr
    assert not (tmp_path / "x.tflite").exists()
