"""The settings say one thing everywhere: `--help`, docs/config.md (whose table is generated
from the same settings: test_service.py), the example config and the prose docs."""

import re
from pathlib import Path

import pytest

from conftest import run_cli
from fer_edge.settings import COLLECT_SETTINGS, RUN_SETTINGS, SETTINGS, Boolean, toml_value

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "systemd" / "config.example.toml"
BY_KEY = {(s.section, s.key): s for s in SETTINGS}


def squeezed(text: str) -> str:
    """Text without whitespace or backticks: line wrapping and markup do not count."""
    return re.sub(r"[\s`]+", "", text)


@pytest.mark.parametrize("command, settings", [("run", RUN_SETTINGS), ("collect", COLLECT_SETTINGS)])
def test_help_gives_each_settings_text_and_default(command, settings):
    result = run_cli("fer-edge", command, "--help")
    assert result.returncode == 0, result.stderr
    shown = squeezed(result.stdout)
    for s in (s for s in settings if s.flag):
        said = squeezed(s.help)
        if s.default is not None and not isinstance(s.kind, Boolean):
            said += squeezed(f"[default: {s.default}]")
        assert said in shown, f"{command} --help does not say what the settings table says about {s.flag}"


def toml_lines(text: str):
    """(section, key, value, comment) of every `key = value  # comment` line, commented out or not."""
    section = None
    for line in text.splitlines():
        header = re.match(r"#?\s*\[([\w.]+)\]", line)
        if header:
            section = header.group(1)
            continue
        setting = re.match(r"#?\s*(\w+)\s*=\s*(\"[^\"]*\"|[^#\s]+)\s*(?:#\s*(.*))?$", line)
        if setting and section:
            yield section, setting.group(1), setting.group(2), setting.group(3) or ""


def example_blocks():
    """The example config, and the TOML examples in docs/config.md."""
    yield "systemd/config.example.toml", EXAMPLE.read_text()
    for block in re.findall(r"```toml\n(.*?)```", (ROOT / "docs" / "config.md").read_text(), re.S):
        yield "docs/config.md", block


def test_example_configs_name_real_settings_and_their_real_defaults():
    checked = 0
    for where, text in example_blocks():
        for section, key, value, comment in toml_lines(text):
            if section == "sessions.valence":
                continue
            setting = BY_KEY.get((section, key))
            assert setting, f"{where}: [{section}] {key} is no setting"
            said = re.search(r'(?:"(?P<named>[^"]+)"\s*\()?the default\)?:?\s*(?P<why>.*)', comment)
            if not said:
                continue
            named = f'"{said.group("named")}"' if said.group("named") else value
            assert named == toml_value(setting.default), f"{where}: [{section}] {key}: the default is not {named}"
            why = squeezed(said.group("why")).rstrip(".")
            if f'{named}:' in setting.help:   # the help explains this value: say the same, from its start
                why = squeezed(f"{named}: ") + why
            assert why in squeezed(setting.help), f"{where}: [{section}] {key}: '{said.group('why')}' is not what --help says"
            checked += 1
    assert checked >= 2, "no example comment names a default: is the parsing still right?"


@pytest.mark.parametrize("page", ["docs/config.md", "docs/device.md", "docs/performance.md", "systemd/config.example.toml"])
def test_every_page_explains_auto_threads_as_the_code_does(page):
    help_text = BY_KEY[("model", "threads")].help
    auto = squeezed(help_text.split('"auto": ', 1)[1].rstrip("."))
    text = (ROOT / page).read_text()
    assert auto in squeezed(text), f"{page} does not say what --threads auto does as --help does"
    assert not re.search(r'auto"?`? uses all|leaves a Pi cores', text), f"{page} still says the old story"
