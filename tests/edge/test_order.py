"""The signed order: a real key pair, the real shipped model, and every hostile form of an
order refused with one line (OrderRefused) and never another error."""

import base64
import hashlib
import json
import os
import random
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fer_edge.core.errors import UserError
from fer_edge.deploy.order import (DEFAULT_GATE, MAGIC, MAX_HEADER, KEY_NAME, PUB_NAME, OrderRefused, canonical, install_header,
                                   key_id, keygen, load_private_key, load_public_key, make_keys, read_order,
                                   rollback_header, sign_order)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    key_path, pub_path = make_keys(str(folder))
    return load_private_key(key_path), load_public_key(pub_path)


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory):
    key_path, pub_path = make_keys(str(tmp_path_factory.mktemp("other")))
    return load_private_key(key_path), load_public_key(pub_path)


@pytest.fixture(scope="module")
def model_bytes(model_path):
    return model_path.read_bytes()


@pytest.fixture(scope="module")
def header(model_path):
    return install_header(str(model_path), 3, "r-1", {"seconds": 60}, "ops@laptop")


@pytest.fixture(scope="module")
def order(header, model_bytes, keys):
    return sign_order(header, model_bytes, keys[0])


def refused(data, public_key):
    """The one-line reason `data` is refused (fails the test on acceptance or any other error)."""
    with pytest.raises(OrderRefused) as caught:
        read_order(data, public_key)
    reason = str(caught.value)
    assert reason and "\n" not in reason and len(reason) <= 500, reason
    return reason


def signed_raw(header_line: bytes, model: bytes, private_key) -> bytes:
    """An order whose header line is `header_line` as it is, signed with the real key: what a
    signer with a bug (or a stolen key) could send; only the header's checks stand between."""
    signed = MAGIC + header_line + b"\n"
    return signed + base64.b64encode(private_key.sign(signed)) + b"\n" + model


def test_an_install_order_reads_back_whole(order, keys, model_bytes, model_path):
    got = read_order(order, keys[1])
    assert got.action == "install" and got.rollout == "r-1" and got.model_bytes == model_bytes
    assert got.model["sha256"] == hashlib.sha256(model_bytes).hexdigest() and got.model["size"] == len(model_bytes)
    assert got.model["name"] == "fer-cnn-int8.tflite" and got.model["version"] == 3
    assert got.model["labels"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert got.model["card"]["architecture"] == "fercnn" and 0.5 < got.model["card"]["private_test_accuracy"] < 1
    assert got.gate == dict(DEFAULT_GATE, seconds=60) and got.allow_older is False and got.from_sha256 is None
    assert got.header["key_id"] == key_id(keys[1]) and got.by == "ops@laptop"
    assert got.release() == {"name": "fer-cnn-int8.tflite", "version": 3, "sha256": got.model["sha256"]}
    assert order.startswith(MAGIC) and order.count(b"\n", 0, len(order) - len(model_bytes)) == 3


def test_a_rollback_order_carries_no_model(keys):
    sha = "ab" * 32
    data = sign_order(rollback_header("r-1", sha, "ops@laptop"), b"", keys[0])
    got = read_order(data, keys[1])
    assert got.action == "rollback" and got.from_sha256 == sha and got.model_bytes == b"" and got.release() is None
    assert refused(data + b"x", keys[1]) == "a rollback order carries no model"


def test_another_keys_signature_is_refused_and_named(header, model_bytes, other_keys, keys):
    reason = refused(sign_order(header, model_bytes, other_keys[0]), keys[1])
    assert reason == f"not signed by this fleet's key (signed with key {key_id(other_keys[1])}, this device trusts {key_id(keys[1])})"


def test_a_signature_copied_onto_another_header_is_refused(order, keys):
    lines = order.split(b"\n", 3)
    header = json.loads(lines[1])
    header["model"]["version"] = 99
    forged = b"\n".join([lines[0], canonical(header), lines[2], lines[3]])
    assert refused(forged, keys[1]) == "not signed by this fleet's key (the signature does not match)"


def test_truncation_at_every_byte_before_the_model_and_in_it(order, keys, model_bytes):
    model_start = len(order) - len(model_bytes)
    reasons = set()
    for cut in range(model_start + 1):
        reasons.add(refused(order[:cut], keys[1]).split(":")[0])
    assert reasons == {"not an order (empty)", "order truncated in its first line", "order truncated in its header",
                       "order truncated in its signature", "model truncated"}, reasons
    for cut in [model_start + 1, model_start + 1000] + random.Random(1).sample(range(model_start, len(order)), 40):
        assert refused(order[:cut], keys[1]) == f"model truncated: {cut - model_start} of {len(model_bytes)} bytes"


def test_every_flipped_byte_before_the_model_and_some_in_it_is_refused(order, keys, model_bytes):
    model_start = len(order) - len(model_bytes)
    positions = list(range(model_start)) + random.Random(2).sample(range(model_start, len(order)), 60)
    for position in positions:
        for bit in (0x01, 0x80):
            flipped = bytearray(order)
            flipped[position] ^= bit
            refused(bytes(flipped), keys[1])
    flipped = bytearray(order)
    flipped[-1] ^= 1
    assert refused(bytes(flipped), keys[1]) == "sha256 does not match"


def test_random_damage_before_the_model_is_refused(order, keys):
    rng = random.Random(3)
    for _ in range(1500):
        data = bytearray(order[:2000])
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            choice = rng.random()
            if choice < 0.4:
                data[at] = rng.randrange(256)
            elif choice < 0.7:
                del data[at:at + rng.randint(1, 50)]
            else:
                data[at:at] = os.urandom(rng.randint(1, 50))
        refused(bytes(data), keys[1])


def test_a_header_that_claims_another_size_or_hash_is_refused(header, model_bytes, keys):
    bigger = dict(header, model=dict(header["model"], size=len(model_bytes) + 10))
    data = signed_raw(canonical(dict(bigger, key_id=key_id(keys[1]))), model_bytes, keys[0])
    assert refused(data, keys[1]) == f"model truncated: {len(model_bytes)} of {len(model_bytes) + 10} bytes"
    smaller = dict(header, model=dict(header["model"], size=len(model_bytes) - 1))
    data = signed_raw(canonical(dict(smaller, key_id=key_id(keys[1]))), model_bytes, keys[0])
    assert refused(data, keys[1]) == f"model longer than signed: {len(model_bytes)} of {len(model_bytes) - 1} bytes"
    other = dict(header, model=dict(header["model"], sha256="0" * 64))
    data = signed_raw(canonical(dict(other, key_id=key_id(keys[1]))), model_bytes, keys[0])
    with pytest.raises(OrderRefused) as caught:
        read_order(data, keys[1])
    assert str(caught.value) == "sha256 does not match" and caught.value.header["rollout"] == "r-1"


def test_a_refusal_before_the_signature_checks_names_no_header(order, keys):
    with pytest.raises(OrderRefused) as caught:
        read_order(order[:200], keys[1])
    assert caught.value.header is None


def test_a_huge_header_non_ascii_and_json_bombs_are_refused(keys):
    public = keys[1]
    assert refused(MAGIC + b"{" * (MAX_HEADER + 10), public) == "header over 64 KiB"
    assert refused(MAGIC + b"x" * (MAX_HEADER + 1) + b"\n", public) == "header over 64 KiB"
    sig = base64.b64encode(b"\0" * 64)
    for line in [b'{"action":"\xff\xfe"}', "{\"by\":\"\u00e9\"}".encode(), b"[" * 60000, b'{"a":' * 12000 + b"1" + b"}" * 12000,
                 b"1" * 50000, b'{"issued":1e999}', b'{"issued":NaN}', b'{"issued":-Infinity}', b"", b"null", b"[]",
                 b'"install"', b'{"action":"install","action":"rollback"}', b' {"action":"install"}']:
        reason = refused(MAGIC + line + b"\n" + sig + b"\n", public)
        assert reason.startswith("header"), (line[:40], reason)


def test_non_orders_are_refused(keys):
    public = keys[1]
    assert refused(b"", public) == "not an order (empty)"
    assert refused(b"\x89PNG\r\n\x1a\n" + os.urandom(100), public) == "not an order (no FER-EDGE-ORDER 1 line)"
    assert refused(b"FER-EDGE-ORDER 2\n{}\n", public) == "an order format this fer-edge does not read (upgrade fer-edge)"
    assert refused("not bytes", public) == "not an order (not bytes)"    # type: ignore[arg-type]
    assert refused(None, public) == "not an order (not bytes)"


def test_signature_lines_that_are_not_signatures(header, model_bytes, keys):
    line = canonical(dict(header, key_id=key_id(keys[1])))
    for sig in [b"", b"!!!!", base64.b64encode(b"\0" * 63), b"A" * 200, base64.b64encode(b"\0" * 64)[:-2]]:
        reason = refused(MAGIC + line + b"\n" + sig + b"\n" + model_bytes, keys[1])
        assert reason.startswith("signature line") or reason.startswith("order truncated"), reason


@pytest.mark.parametrize("change, expected", [
    (lambda h: h.update(extra=1), "header: unknown field 'extra'"),
    (lambda h: h.pop("gate"), "header: missing gate"),
    (lambda h: h.update(action="delete"), "header: action 'delete' is not install or rollback"),
    (lambda h: h.update(action=["install"]), "header: action ['install'] is not install or rollback"),
    (lambda h: h.update(rollout="../../etc"), "header: rollout '../../etc' is not 1..64 letters, digits, '.', '_' or '-'"),
    (lambda h: h.update(rollout="x" * 65), "is not 1..64 letters"),
    (lambda h: h.update(issued="yesterday"), "header: issued 'yesterday' is not a unix time"),
    (lambda h: h.update(issued=True), "header: issued True is not a unix time"),
    (lambda h: h.update(issued=10 ** 400), "header: issued 1000000000000000000000000000000000000... is not a unix time"),
    (lambda h: h["gate"].update(min_faces=10 ** 400), "header: gate min_faces 100000000000000000000"),
    (lambda h: h["model"].update(card={"params": 10 ** 400}), "header: model card 'params' is not a number"),
    (lambda h: h["model"].update(size=10 ** 400), "header: model size 1000000"),
    (lambda h: h.update(by="\x1b[2Jops"), "header: by is not a printable text of 1..128 characters"),
    (lambda h: h.update(by="x" * 129), "header: by is not a printable text"),
    (lambda h: h.update(allow_older="yes"), "header: allow_older is not true or false"),
    (lambda h: h.update(key_id="KEY"), "header: key_id is not 16 hex digits"),
    (lambda h: h.update(model=[]), "header: model is not an object"),
    (lambda h: h["model"].update(version=0), "header: model version 0 is not a whole number >= 1"),
    (lambda h: h["model"].update(version=2.5), "header: model version 2.5 is not a whole number >= 1"),
    (lambda h: h["model"].update(version=True), "header: model version True"),
    (lambda h: h["model"].update(version=10 ** 30), "header: model version"),
    (lambda h: h["model"].update(sha256="AB" * 32), "header: model sha256 is not 64 lowercase hex digits"),
    (lambda h: h["model"].update(size=-1), "header: model size -1 is not"),
    (lambda h: h["model"].update(size="300"), "header: model size '300' is not"),
    (lambda h: h["model"].update(labels=["happy"]), "header: model labels: a label set has 2..32 labels"),
    (lambda h: h["model"].update(labels=["Happy", "sad"]), "header: model labels: label 'Happy' is not"),
    (lambda h: h["model"].update(labels=["sad", "sad"]), "repeat a name"),
    (lambda h: h["model"].update(labels=[1, 2]), "header: model labels: label 1"),
    (lambda h: h["model"].update(card=[1]), "header: model card is not an object"),
    (lambda h: h["model"].update(card={"a": [1]}), "header: model card 'a' is not a number or a short text"),
    (lambda h: h["model"].update(card={"a": "x" * 300}), "header: model card 'a'"),
    (lambda h: h["model"].update(card={str(i): i for i in range(65)}), "header: model card is not an object of at most 64"),
    (lambda h: h["model"].update(name=""), "header: model name is not a printable text"),
    (lambda h: h["model"].update(extra=1), "header: model: unknown field 'extra'"),
    (lambda h: h["gate"].update(seconds=-1), "header: gate seconds -1 is not a number in 1..86400"),
    (lambda h: h["gate"].update(max_fps_drop=2), "header: gate max_fps_drop 2 is not a number in 0..1"),
    (lambda h: h["gate"].update(min_faces=2.5), "header: gate min_faces 2.5 is not a whole number"),
    (lambda h: h["gate"].update(max_errors=None), "header: gate max_errors None"),
    (lambda h: h["gate"].update(max_seconds=10), "header: gate max_seconds is below its seconds"),
    (lambda h: h["gate"].pop("seconds"), "header: gate: missing seconds"),
    (lambda h: h["gate"].update(colour="red"), "header: gate: unknown field 'colour'"),
])
def test_a_signed_header_of_the_wrong_form_is_refused(header, model_bytes, keys, change, expected):
    bad = json.loads(json.dumps(dict(header, key_id=key_id(keys[1]))))
    change(bad)
    reason = refused(signed_raw(canonical(bad), model_bytes, keys[0]), keys[1])
    assert reason.startswith("header") and expected in reason, reason


def test_nan_in_the_gate_is_refused_however_it_is_spelt(header, model_bytes, keys):
    line = canonical(dict(header, key_id=key_id(keys[1])))
    for spelling in (b"NaN", b"Infinity", b"1e999", b"-0.0e999"):
        bad = line.replace(b'"max_fps_drop":0.3', b'"max_fps_drop":' + spelling)
        assert bad != line
        assert refused(signed_raw(bad, model_bytes, keys[0]), keys[1]).startswith("header")


def test_a_header_in_another_spelling_is_refused_though_signed(header, model_bytes, keys):
    pretty = json.dumps(dict(header, key_id=key_id(keys[1])), sort_keys=True).encode()
    assert refused(signed_raw(pretty, model_bytes, keys[0]), keys[1]).startswith("header is not in canonical form")


def test_the_signer_refuses_what_a_device_would(header, model_bytes, keys, model_path):
    with pytest.raises(OrderRefused, match="model truncated"):
        sign_order(header, model_bytes[:-1], keys[0])
    with pytest.raises(OrderRefused, match="header: gate max_fps_drop"):
        install_header(str(model_path), 1, "r", {"max_fps_drop": float("nan")}, "me")
    with pytest.raises(OrderRefused, match="header: model version"):
        install_header(str(model_path), 0, "r", None, "me")
    with pytest.raises(OrderRefused, match="header: rollout"):
        rollback_header("no spaces", "ab" * 32, "me")
    with pytest.raises(OrderRefused, match="from_sha256"):
        rollback_header("r", "not a sha", "me")


def test_install_header_refuses_what_is_not_a_model(tmp_path):
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"not a model at all")
    with pytest.raises(UserError, match="not a TFLite model"):
        install_header(str(fake), 1, "r", None, "me")
    with pytest.raises(UserError, match="cannot read model"):
        install_header(str(tmp_path / "missing.tflite"), 1, "r", None, "me")


def test_keys_are_made_once_private_0600_and_never_overwritten(tmp_path):
    message = keygen(str(tmp_path / "keys"))
    key_path, pub_path = tmp_path / "keys" / KEY_NAME, tmp_path / "keys" / PUB_NAME
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600 and str(key_path) in message and str(pub_path) in message
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    before = key_path.read_bytes()
    with pytest.raises(UserError, match="never overwritten"):
        make_keys(str(tmp_path / "keys"))
    assert key_path.read_bytes() == before
    assert key_id(load_public_key(str(pub_path))) == key_id(load_private_key(str(key_path)).public_key())
    assert f"key id {key_id(load_public_key(str(pub_path)))}" in message


def test_wrong_key_files_are_one_line(tmp_path):
    make_keys(str(tmp_path))
    key_path, pub_path = str(tmp_path / KEY_NAME), str(tmp_path / PUB_NAME)
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n")
    text = tmp_path / "notes.txt"
    text.write_bytes(os.urandom(300))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_pub = tmp_path / "ec.pub"
    ec_pub.write_bytes(ec_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    ec_private = tmp_path / "ec.key"
    ec_private.write_bytes(ec_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    locked = tmp_path / "locked.key"
    locked.write_bytes(load_private_key(key_path).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")))
    cases = [(load_public_key, key_path, "a private key; a device takes the public key"),
             (load_private_key, pub_path, "a public key; signing needs the private key"),
             (load_public_key, str(tmp_path / "missing.pub"), "cannot read the deploy public key (No such file or directory)"),
             (load_public_key, str(tmp_path), "cannot read the deploy public key"),
             (load_public_key, str(garbage), "not a readable PEM public key"),
             (load_public_key, str(text), "not a PEM deploy public key"),
             (load_public_key, str(ec_pub), "not an Ed25519 public key"),
             (load_private_key, str(ec_private), "not an Ed25519 key"),
             (load_private_key, str(locked), "the key is encrypted")]
    for load, path, expected in cases:
        with pytest.raises(UserError) as caught:
            load(path)
        message = str(caught.value)
        assert "\n" not in message and message.startswith(path + ": ") and expected in message, message


def hostile_value(rng):
    """A JSON value of a random kind, of the sizes and forms that break careless checks."""
    return rng.choice([None, True, False, 0, -1, 1, 2 ** 31, 10 ** 400, -10 ** 400, 0.5, -0.0, 1e308, 5e-324,
                       "", "x" * 5000, "\u202eevil", "\x00", "ab" * 32, "install", "rollback", [], [1] * 100, [[[[]]]],
                       {}, {"a": {"b": {"c": None}}}, ["happy", "sad"], {"seconds": 1}])


def test_random_hostile_values_anywhere_in_a_signed_header_are_one_line(header, model_bytes, keys):
    """Every field, at every depth, replaced by values of every kind, signed with the real key:
    the device answers OrderRefused with one line, or reads a valid order; nothing else."""
    rng = random.Random(5)
    base = json.loads(json.dumps(dict(header, key_id=key_id(keys[1]))))
    accepted = 0
    for _ in range(1500):
        bad = json.loads(json.dumps(base))
        for _ in range(rng.randint(1, 3)):
            target = bad
            while isinstance(target, dict) and target and rng.random() < 0.6:
                key = rng.choice(sorted(target))
                if not isinstance(target[key], dict):
                    break
                target = target[key]
            if isinstance(target, dict):
                key = rng.choice(sorted(target) + ["new"])
                target[key] = hostile_value(rng)
        try:
            read_order(signed_raw(canonical(bad), model_bytes, keys[0]), keys[1])
            accepted += 1
        except OrderRefused as exc:
            assert str(exc) and "\n" not in str(exc) and len(str(exc)) <= 500
    assert accepted < 150   # almost every such change is refused
