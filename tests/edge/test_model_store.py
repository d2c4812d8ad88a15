"""The device's model store: real models, real files, and real processes killed at every step
of a deployment (and SIGKILLed at random moments); a fresh process then starts on the old
model or the new one, whole, never a broken one."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT
from fer_edge.core.atomic import sha256_of
from fer_edge.deploy.model_store import POINTER, ModelStore
from fer_edge.deploy.order import install_header, load_private_key, load_public_key, make_keys, read_order, sign_order

MODELS = ROOT / "models"
GATE = {"seconds": 5, "max_seconds": 30, "min_faces": 3}


@pytest.fixture(scope="module")
def orders(tmp_path_factory):
    """Signed install orders of three real models (v1, v2, v3), their files and the public key's path."""
    folder = tmp_path_factory.mktemp("orders")
    key_path, pub_path = make_keys(str(folder))
    private = load_private_key(key_path)
    made = {}
    for version, name in enumerate(["fer-cnn-int8.tflite", "fer-cnn-int8-float32.tflite", "fer-cnn-int8-dynamic.tflite"], 1):
        path = MODELS / name
        data = sign_order(install_header(str(path), version, f"r{version}", GATE, "ops@test"), path.read_bytes(), private)
        (folder / f"v{version}.order").write_bytes(data)
        made[version] = read_order(data, load_public_key(pub_path))
    return made, folder, pub_path


def deploy(store, order, keep=True):
    new = store.put(order)
    store.begin_trial(new, {"fps": 5.0}, order.rollout, order.gate)
    if keep:
        store.keep()
    return new


def model_files(folder):
    return sorted(p.name for p in Path(folder).iterdir() if p.name != POINTER)


def test_nothing_deployed_runs_the_configured_model(tmp_path):
    store = ModelStore(str(tmp_path / "models"))
    assert store.start() is None and store.active is None and store.state == "running" and store.events == []
    assert os.listdir(tmp_path / "models") == []


def test_a_deploy_folder_that_cannot_be_one_is_one_clear_line(tmp_path):
    from fer_edge.core.errors import UserError

    (tmp_path / "a-file").write_text("")
    for folder, why in ((tmp_path / "a-file", "File exists"), (tmp_path / "a-file" / "models", "Not a directory")):
        with pytest.raises(UserError) as refused:
            ModelStore(str(folder))
        assert str(refused.value) == f"deploy folder {folder}: cannot make it ({why}); set another ([deploy] dir, --deploy-dir)"


def test_a_kept_model_runs_at_the_next_start_and_the_one_before_is_kept(tmp_path, orders):
    made, _, _ = orders
    store = ModelStore(str(tmp_path))
    first = deploy(store, made[1])
    assert first.path == str(tmp_path / f"{made[1].model['sha256']}.tflite") and sha256_of(first.path) == first.sha256
    second = deploy(store, made[2])
    again = ModelStore(str(tmp_path))
    assert again.start() == second and again.previous == first and again.state == "running" and again.rollout == "r2"
    assert again.events == [] and model_files(tmp_path) == sorted([f"{first.sha256}.tflite", f"{second.sha256}.tflite"])
    assert second.labels == tuple(made[2].model["labels"]) and second.version == 2 and second.name == "fer-cnn-int8-float32.tflite"


def test_a_rollback_returns_to_the_previous_model_and_rejects_the_left_one(tmp_path, orders):
    made, _, _ = orders
    store = ModelStore(str(tmp_path))
    first = deploy(store, made[1])
    second = deploy(store, made[2], keep=False)
    assert store.state == "trial" and store.trial["before"] == {"fps": 5.0} and store.trial["gate"] == made[2].gate
    assert store.roll_back("faces dropped 80%") == first
    assert store.rejected(second.sha256) and not store.rejected(first.sha256)
    assert store.events[-1] == {"state": "rolled back", "reason": "faces dropped 80%", "rollout": "r2", "release": second.release()}
    fresh = ModelStore(str(tmp_path))
    assert fresh.start() == first and fresh.previous is None and fresh.rejected(second.sha256)
    assert fresh.roll_back("manual") is None and ModelStore(str(tmp_path)).start() is None   # back to the configured model
    assert model_files(tmp_path) == []


def test_a_trial_restarted_twice_rolls_back_by_itself(tmp_path, orders):
    made, _, _ = orders
    store = ModelStore(str(tmp_path))
    first = deploy(store, made[1])
    second = deploy(store, made[2], keep=False)
    once = ModelStore(str(tmp_path))
    assert once.start() == second and once.state == "trial" and once.trial["attempts"] == 1 and once.events == []
    twice = ModelStore(str(tmp_path))
    assert twice.start() == first and twice.state == "running" and twice.rejected(second.sha256)
    assert twice.events[0]["state"] == "rolled back" and "cut short by 2 restarts" in twice.events[0]["reason"]
    assert twice.events[0]["release"] == second.release() and twice.events[0]["rollout"] == "r2"


def test_a_damaged_or_missing_active_file_falls_back_to_the_previous(tmp_path, orders):
    made, _, _ = orders
    store = ModelStore(str(tmp_path))
    first = deploy(store, made[1])
    second = deploy(store, made[2])
    with open(second.path, "r+b") as f:
        f.seek(5000)
        f.write(b"\0\0\0\0")
    fresh = ModelStore(str(tmp_path))
    assert fresh.start() == first and "file missing or damaged" in fresh.events[0]["reason"]
    assert not fresh.rejected(second.sha256)            # the disk's fault, not the model's: its order may come again
    assert not os.path.exists(second.path)
    third = deploy(fresh, made[3])
    os.unlink(third.path)
    os.truncate(first.path, 100)
    last = ModelStore(str(tmp_path))
    assert last.start() is None and "damaged too, the configured model runs" in last.events[0]["reason"]


def test_at_most_three_model_files_are_kept(tmp_path, orders):
    made, _, _ = orders
    store = ModelStore(str(tmp_path))
    for version in (1, 2, 3, 1, 2, 3):
        deploy(store, made[version])
        assert len(model_files(tmp_path)) <= 2
    store.put(made[1])
    assert len(model_files(tmp_path)) == 3
    deploy(store, made[1], keep=False)
    with pytest.raises(RuntimeError, match="a trial is under way"):
        store.begin_trial(store.put(made[2]), None, None, {})

WHOLE = {"format": 1, "active": None, "previous": None, "state": "running", "rollout": None, "trial": None, "rejected": []}


@pytest.mark.parametrize("pointer", [b"", b"{", b"[]", b"\xff\xfe", b"[" * 100000, json.dumps({"format": 2}).encode(),
                                     json.dumps({"format": 1, "active": {"name": "x", "version": 1, "sha256": "../../etc/passwd",
                                                                          "labels": ["a", "b"]}}).encode(),
                                     json.dumps({"format": 1, "state": "trial", "active": None, "trial": {}}).encode(),
                                     json.dumps({"format": 1, "state": "exploded"}).encode(),
                                     json.dumps({"format": 1, "rejected": "all"}).encode(),
                                     json.dumps(dict(WHOLE, active={"name": "\x1b[2Jx\nfer-edge: forged", "version": 1,
                                                                    "sha256": "ab" * 32, "labels": ["a", "b"]})).encode(),
                                     json.dumps(dict(WHOLE, previous={"name": "", "version": 1, "sha256": "ab" * 32,
                                                                      "labels": ["a", "b"]})).encode()])
def test_a_damaged_pointer_runs_the_configured_model_with_one_line(tmp_path, pointer):
    (tmp_path / POINTER).write_bytes(pointer)
    store = ModelStore(str(tmp_path))
    assert store.start() is None
    assert len(store.events) == 1 and "\n" not in store.events[0]["reason"] and store.events[0]["reason"].startswith(POINTER)


# -- real processes killed at every step ----------------------------------------------------

CHILD = """
import os, sys
folder, order_path, pub_path, kill_at, scenario = sys.argv[1:6]
from fer_edge.deploy.model_store import ModelStore
from fer_edge.deploy.order import load_public_key, read_order
order = read_order(open(order_path, "rb").read(), load_public_key(pub_path))
calls = [0]

def dying(real):
    def call(*args, **kwargs):
        calls[0] += 1
        if calls[0] == int(kill_at):
            os._exit(99)          # the process ends here, as at a kill: no clean-up, no flush
        return real(*args, **kwargs)
    return call

for name in ("open", "fsync", "replace", "unlink", "chmod"):
    setattr(os, name, dying(getattr(os, name)))
store = ModelStore(folder)
store.start()
if scenario == "deploy":
    new = store.put(order)
    store.begin_trial(new, {"fps": 5.0}, order.rollout, order.gate)
    store.keep()
elif scenario == "rollback":
    store.roll_back("the gate said so")
elif scenario == "loop":                  # deploy order and the one in sys.argv[6] in turn until killed
    other = read_order(open(sys.argv[6], "rb").read(), load_public_key(pub_path))
    print("ready", flush=True)
    while True:
        for each in (order, other):
            if store.state == "trial":
                store.keep()
            new = store.put(each)
            store.begin_trial(new, {"fps": 5.0}, each.rollout, each.gate)
            store.keep() if new.version % 2 else store.roll_back("odd")
print("done", calls[0], flush=True)
"""

VERIFY = """
import json, sys
from fer_edge.core.atomic import sha256_of
from fer_edge.deploy.model_store import ModelStore
found = {}
for folder in sys.argv[1:]:
    got = ModelStore(folder).start()
    found[folder] = None if got is None else [got.sha256, sha256_of(got.path)]
print(json.dumps(found))
"""


def run_child(*args, timeout=60):
    return subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def verify(folders):
    """What a fresh process starts on in each folder: {folder: [sha256 named, sha256 of its file] or None}."""
    result = subprocess.run([sys.executable, "-c", VERIFY, *map(str, folders)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def killed_at_every_step(tmp_path, orders, scenario, prepare, order_version):
    """Run `scenario` in a child killed at its 1st, 2nd, ... file operation until one finishes;
    returns {folder: what a fresh process starts on}."""
    made, folder, pub_path = orders
    folders = []
    for kill_at in range(1, 80):
        target = tmp_path / f"kill-{kill_at}"
        prepare(ModelStore(str(target)))
        result = run_child(target, folder / f"v{order_version}.order", pub_path, kill_at, scenario)
        folders.append(target)
        if result.returncode == 0:
            assert result.stdout.startswith("done"), result.stdout
            assert kill_at == int(result.stdout.split()[1]) + 1   # every file operation was a place to die
            break
        assert result.returncode == 99, result.stderr[-2000:]
    else:
        pytest.fail("the child never finished")
    assert kill_at > 5, "too few steps to mean anything"
    return verify(folders)


@pytest.mark.slow
def test_a_deployment_killed_at_any_step_starts_on_the_old_model_or_the_new(tmp_path, orders):
    made, _, _ = orders
    old, new = made[1].model["sha256"], made[2].model["sha256"]
    found = killed_at_every_step(tmp_path, orders, "deploy", lambda store: deploy(store, made[1]), 2)
    for folder, got in found.items():
        assert got is not None and got[0] in (old, new) and got[1] == got[0], (folder, got)
        assert len(model_files(folder)) <= 2 and not [n for n in os.listdir(folder) if n.startswith("tmp")]
    assert list(found.values())[0][0] == old and list(found.values())[-1][0] == new


@pytest.mark.slow
def test_a_rollback_killed_at_any_step_starts_on_the_old_model_or_the_new(tmp_path, orders):
    made, _, _ = orders
    old, new = made[1].model["sha256"], made[2].model["sha256"]

    def prepare(store):
        deploy(store, made[1])
        deploy(store, made[2], keep=False)

    found = killed_at_every_step(tmp_path, orders, "rollback", prepare, 2)
    for folder, got in found.items():
        assert got is not None and got[0] in (old, new) and got[1] == got[0], (folder, got)
    assert list(found.values())[-1][0] == old


@pytest.mark.slow
def test_sigkill_at_random_moments_of_repeated_deployments(tmp_path, orders):
    made, folder, pub_path = orders
    good = {made[v].model["sha256"] for v in (1, 2)}
    target = tmp_path / "loop"
    deploy(ModelStore(str(target)), made[1])
    rng = random.Random(4)
    for _ in range(12):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(target), str(folder / "v1.order"), str(pub_path), "0",
                                  "loop", str(folder / "v2.order")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ready", child.stderr.read()[-2000:]
            time.sleep(rng.uniform(0.0, 0.4))
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(timeout=30)
        got = verify([target])[str(target)]
        assert got is not None and got[0] in good and got[1] == got[0], got
        assert len(model_files(target)) <= 3


def test_the_last_followed_order_s_time_outlasts_restarts_and_rollbacks(tmp_path, orders):
    """An order issued before it is an old one sent again (a replay): the agent refuses it."""
    made, _, _ = orders
    store = ModelStore(str(tmp_path))
    assert store.followed == 0.0
    new = store.put(made[2])
    store.begin_trial(new, None, made[2].rollout, made[2].gate, issued=made[2].issued)
    assert ModelStore(str(tmp_path)).followed == made[2].issued
    store.roll_back("gate")
    store.begin_trial(store.put(made[1]), None, made[1].rollout, made[1].gate, issued=made[1].issued)   # issued earlier
    again = ModelStore(str(tmp_path))
    assert again.followed == made[2].issued and again.start().version == 1
    pointer = json.loads((tmp_path / POINTER).read_text())
    (tmp_path / POINTER).write_text(json.dumps(dict(pointer, issued=10 ** 400)))
    damaged = ModelStore(str(tmp_path))
    assert damaged.followed == 0.0 and damaged.events[0]["reason"] == "active.json damaged (its issued): the configured model runs"


def test_a_pointer_with_hostile_values_anywhere_never_breaks_the_start(tmp_path, orders):
    """The pointer is ours, but a disk or a person can change it: whatever it holds, start()
    gives a whole model, or None with one line, never an exception."""
    made, _, _ = orders
    store = ModelStore(str(tmp_path / "base"))
    deploy(store, made[1])
    deploy(store, made[2], keep=False)
    base = json.loads((tmp_path / "base" / POINTER).read_text())
    values = [None, True, 0, -1, 10 ** 400, 0.5, "", "x" * 300, "\x1b[2J", "ab" * 32, [], [1], {}, {"a": 1}, ["happy", "sad"],
              "running", "trial"]
    rng = random.Random(6)
    for attempt in range(300):
        bad = json.loads(json.dumps(base))
        target = bad
        while rng.random() < 0.6:
            dicts = [k for k in sorted(target) if isinstance(target[k], dict)]
            if not dicts:
                break
            target = target[rng.choice(dicts)]
        target[rng.choice(sorted(target) + ["new"])] = rng.choice(values)
        folder = tmp_path / f"f{attempt}"
        folder.mkdir()
        for name in model_files(tmp_path / "base"):
            os.link(tmp_path / "base" / name, folder / name)
        (folder / POINTER).write_text(json.dumps(bad))
        fresh = ModelStore(str(folder))
        got = fresh.start()
        assert got is None or sha256_of(got.path) == got.sha256
        assert all("\n" not in event["reason"] for event in fresh.events)


def test_a_full_disk_at_start_runs_the_previous_model_rather_than_an_uncounted_trial(full_tmpfs, orders):
    made, _, _ = orders
    disk, fill = full_tmpfs
    store = ModelStore(str(disk / "models"))
    first = deploy(store, made[1])
    deploy(store, made[2], keep=False)
    fill()
    fresh = ModelStore(str(disk / "models"))
    assert fresh.start() == first and fresh.state == "running"
    assert fresh.events[0]["reason"] == "cannot write active.json (No space left on device): the previous model runs"
    os.unlink(disk / "filler")
    assert ModelStore(str(disk / "models")).start().version == 2     # nothing was written: the trial's first restart
