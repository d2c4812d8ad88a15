"""The signed order that carries a model (or a rollback) to a device.

An order is `FER-EDGE-ORDER 1` on a line, the header (canonical JSON) on a line, the Ed25519
signature of those two lines (base64) on a line, then the model's bytes. A device holds only
the fleet's public key: whoever can write to its topic still cannot make it run a model the
key did not sign. Everything read from an order is untrusted until its signature checks, and
every refusal is one line (`OrderRefused`), for the device's log and the fleet.
"""

import base64
import binascii
import hashlib
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..core.atomic import write_atomically
from ..core.errors import UserError
from ..core.labels import label_problem
from ..core.log import unprintable
from ..model.metadata import read_metadata

MAGIC = b"FER-EDGE-ORDER 1\n"
MAX_HEADER = 64 * 1024
MAX_MODEL = 64 * 1024 * 1024
MAX_REASON = 500
MAX_NAME = 128            # a model's name, and who signed
SIGNATURE_LINE = 88   # base64 of 64 bytes
KEY_NAME, PUB_NAME = "fer-edge-deploy.key", "fer-edge-deploy.pub"

DEFAULT_GATE: Dict[str, float] = {
    "seconds": 300, "max_seconds": 900, "min_faces": 20, "max_fps_drop": 0.3, "max_faces_drop": 0.5,
    "max_errors": 0, "max_emotion_shift": 0.5, "min_spread_ratio": 0.25}
# Each gate value's (least, most, whole number).
GATE_RANGES: Dict[str, Tuple[float, float, bool]] = {
    "seconds": (1, 86400, False), "max_seconds": (1, 7 * 86400, False), "min_faces": (0, 10 ** 6, True),
    "max_fps_drop": (0, 1, False), "max_faces_drop": (0, 1, False), "max_errors": (0, 10 ** 9, True),
    "max_emotion_shift": (0, 1, False), "min_spread_ratio": (0, 1, False)}

ROLLOUT_FORM = re.compile(r"[A-Za-z0-9._-]{1,64}")
SHA256_FORM = re.compile(r"[0-9a-f]{64}")
KEY_ID_FORM = re.compile(r"[0-9a-f]{16}")
FIELDS = {"install": {"action", "rollout", "issued", "by", "key_id", "model", "allow_older", "gate"},
          "rollback": {"action", "rollout", "issued", "by", "key_id", "from_sha256"}}
MODEL_FIELDS = {"name", "version", "sha256", "size", "labels", "card"}
MAX_VERSION = 10 ** 9
MAX_CARD = 64


class OrderRefused(UserError):
    """An order this device will not follow; its text is one line. `header` is the order's
    header when its signature checked (so the refusal can name the rollout), else None."""

    def __init__(self, reason: str, header: Optional[dict] = None):
        super().__init__(one_line(reason))
        self.reason = str(self)
        self.header = header


def one_line(text: str) -> str:
    """`text` as one printable line of at most MAX_REASON characters."""
    flat = "".join(" " if unprintable(c) else c for c in str(text)).strip()
    return flat if len(flat) <= MAX_REASON else flat[:MAX_REASON - 3] + "..."


@dataclass(frozen=True)
class Order:
    """An order whose signature, sizes and sha256 checked."""

    header: dict
    action: str                     # "install" | "rollback"
    rollout: str
    model_bytes: bytes = b""        # empty for a rollback
    model: dict = field(default_factory=dict)   # install: name, version, sha256, size, labels, card
    gate: dict = field(default_factory=dict)
    allow_older: bool = False
    from_sha256: Optional[str] = None

    @property
    def by(self) -> str:
        return str(self.header["by"])

    @property
    def issued(self) -> float:
        return float(self.header["issued"])

    def release(self) -> Optional[dict]:
        """{name, version, sha256} of the model an install carries (MODEL STATE's `release`), else None."""
        return {k: self.model[k] for k in ("name", "version", "sha256")} if self.model else None


# -- keys ---------------------------------------------------------------------------------


def make_keys(folder: str) -> Tuple[str, str]:
    """A new key pair in `folder`: (private key path, public key path). The private key is
    written 0600 and never over an existing one."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    key_path, pub_path = os.path.join(folder, KEY_NAME), os.path.join(folder, PUB_NAME)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UserError(f"{key_path}: a deploy key is there already; it is never overwritten "
                        "(move it away first, or use it)") from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    write_atomically(pub_path, private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), mode=0o644)
    return key_path, pub_path


def keygen(folder: str) -> str:
    """`fer-edge deploy keygen`: make the pair and say what each file is for."""
    key_path, pub_path = make_keys(folder)
    return (f"wrote {key_path} (private: keep it on this machine, never on a device) and {pub_path} "
            f"(public: fer-edge service install --deploy-key {pub_path}); key id {key_id(load_public_key(pub_path))}")


def _read_pem(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(64 * 1024)
    except OSError as exc:
        raise UserError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    if b"-----BEGIN" not in data:
        raise UserError(f"{path}: not a PEM {what} (fer-edge deploy keygen makes one)")
    return data


def load_private_key(path: str) -> Ed25519PrivateKey:
    """The operator's signing key, or UserError with one line."""
    data = _read_pem(path, "deploy private key")
    if b"PRIVATE KEY" not in data:
        raise UserError(f"{path}: a public key; signing needs the private key ({KEY_NAME})")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise UserError(f"{path}: the key is encrypted; fer-edge needs it unencrypted (kept 0600)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise UserError(f"{path}: not a readable PEM private key (fer-edge deploy keygen makes one)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"{path}: not an Ed25519 key (fer-edge deploy keygen makes one)")
    return key


def load_public_key(path: str) -> Ed25519PublicKey:
    """The fleet's public key a device trusts, or UserError with one line."""
    data = _read_pem(path, "deploy public key")
    if b"PRIVATE KEY" in data:
        raise UserError(f"{path}: a private key; a device takes the public key ({PUB_NAME}), "
                        "and the private key never leaves the operator's machine")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise UserError(f"{path}: not a readable PEM public key (fer-edge deploy keygen makes one)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UserError(f"{path}: not an Ed25519 public key (fer-edge deploy keygen makes one)")
    return key


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the sha256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# -- writing orders -----------------------------------------------------------------------


def card_figures(metadata: dict) -> Dict[str, Any]:
    """The figures of a model's card an order carries: what it is and how well it did."""
    private = metadata.get("accuracy", {}).get("PrivateTest", {}) if isinstance(metadata.get("accuracy"), dict) else {}
    found = {"architecture": metadata.get("architecture"), "quantization": metadata.get("quantization"),
             "params": metadata.get("params"), "multiply_adds": metadata.get("multiply_adds"),
             "private_test_accuracy": private.get("accuracy") if isinstance(private, dict) else None,
             "private_test_macro_f1": private.get("macro_f1") if isinstance(private, dict) else None,
             "temperature": (metadata.get("calibration") or {}).get("temperature"),
             "converted_at": (metadata.get("provenance") or {}).get("converted_at"),
             "train_commit": (metadata.get("provenance") or {}).get("train_commit")}
    return {k: v for k, v in found.items() if _card_value(v)}


def _card_value(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= 256
    return _number(value, -1e15, 1e15)


def install_header(model_path: str, version: int, rollout: str, gate: Optional[dict], by: str,
                   allow_older: bool = False, name: Optional[str] = None) -> dict:
    """The header of an install order for the model at `model_path` (its labels and card
    figures from its metadata, its sha256 and size); `gate` overrides DEFAULT_GATE's values.
    `sign_order` adds the key id."""
    try:
        with open(model_path, "rb") as f:
            data = f.read(MAX_MODEL + 1)
    except OSError as exc:
        raise UserError(f"{model_path}: cannot read model ({exc.strerror or exc})") from None
    if len(data) > MAX_MODEL:
        raise UserError(f"{model_path}: over {MAX_MODEL >> 20} MiB, the most an order carries")
    metadata = read_metadata(data, source=model_path)
    header = {"action": "install", "rollout": rollout, "issued": time.time(), "by": by,
              "model": {"name": name or os.path.basename(model_path), "version": version,
                        "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                        "labels": list(metadata["labels"]), "card": card_figures(metadata)},
              "allow_older": allow_older, "gate": dict(DEFAULT_GATE, **(gate or {}))}
    check_header(dict(header, key_id="0" * 16))
    return header


def rollback_header(rollout: str, from_sha256: str, by: str) -> dict:
    """The header of an order that sends the devices running `from_sha256` back to their previous model."""
    header = {"action": "rollback", "rollout": rollout, "issued": time.time(), "by": by, "from_sha256": from_sha256}
    check_header(dict(header, key_id="0" * 16))
    return header


def canonical(header: dict) -> bytes:
    """The one byte form of a header (what is signed)."""
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def sign_order(header: dict, model_bytes: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The order's bytes: `header` (with the key's id) signed, then `model_bytes` (empty for a rollback)."""
    header = dict(header, key_id=key_id(private_key.public_key()))
    check_header(header)
    check_model_bytes(header, model_bytes)
    signed = MAGIC + canonical(header) + b"\n"
    if len(signed) - len(MAGIC) - 1 > MAX_HEADER:
        raise OrderRefused(f"header over {MAX_HEADER >> 10} KiB")
    return signed + base64.b64encode(private_key.sign(signed)) + b"\n" + bytes(model_bytes)


# -- reading orders -----------------------------------------------------------------------


def read_order(data: bytes, public_key: Ed25519PublicKey) -> Order:
    """The order in `data`, checked: magic, sizes, header JSON and form, signature, then the
    model's size and sha256. Anything else raises OrderRefused with one line, never another error."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise OrderRefused("not an order (not bytes)")
    data = bytes(data)
    if not data.startswith(MAGIC):
        if data and MAGIC.startswith(data):
            raise OrderRefused("order truncated in its first line")
        if data.startswith(b"FER-EDGE-ORDER "):
            raise OrderRefused("an order format this fer-edge does not read (upgrade fer-edge)")
        raise OrderRefused(f"not an order (no {MAGIC.decode().strip()} line)" if data else "not an order (empty)")
    header_end = data.find(b"\n", len(MAGIC), len(MAGIC) + MAX_HEADER + 1)
    if header_end < 0:
        if len(data) > len(MAGIC) + MAX_HEADER:
            raise OrderRefused(f"header over {MAX_HEADER >> 10} KiB")
        raise OrderRefused("order truncated in its header")
    signature_end = data.find(b"\n", header_end + 1, header_end + 2 + SIGNATURE_LINE)
    if signature_end < 0:
        if len(data) > header_end + 1 + SIGNATURE_LINE:
            raise OrderRefused("signature line is not an Ed25519 signature")
        raise OrderRefused("order truncated in its signature")
    model_bytes = data[signature_end + 1:]
    if len(model_bytes) > MAX_MODEL:
        raise OrderRefused(f"model over {MAX_MODEL >> 20} MiB")
    header = parse_header(data[len(MAGIC):header_end])
    check_header(header)
    line = data[header_end + 1:signature_end]
    try:
        signature = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise OrderRefused("signature line is not base64") from None
    if len(signature) != 64 or base64.b64encode(signature) != line:   # one spelling of each signature
        raise OrderRefused("signature line is not an Ed25519 signature")
    try:
        public_key.verify(signature, data[:header_end + 1])
    except InvalidSignature:
        ours = key_id(public_key)
        theirs = header["key_id"]
        raise OrderRefused("not signed by this fleet's key" + (
            f" (signed with key {theirs}, this device trusts {ours})" if theirs != ours else " (the signature does not match)")) from None
    check_model_bytes(header, model_bytes)
    if header["action"] == "rollback":
        return Order(header, "rollback", header["rollout"], from_sha256=header["from_sha256"])
    return Order(header, "install", header["rollout"], model_bytes, header["model"], header["gate"],
                 header["allow_older"])


def parse_header(line: bytes) -> Any:
    """The header line as JSON, refused unless it is in its one canonical form (which also
    refuses repeated keys, NaN and infinities)."""
    def no_constant(name: str) -> Any:
        raise OrderRefused(f"header holds {name}, not a number")

    try:
        header = json.loads(line.decode("ascii"), parse_constant=no_constant)
    except UnicodeDecodeError:
        raise OrderRefused("header is not ASCII JSON") from None
    except RecursionError:
        raise OrderRefused("header is not an order's header (nested too deep)") from None
    except ValueError as exc:   # json.JSONDecodeError, and numbers too long to convert
        raise OrderRefused(f"header is not JSON ({str(exc).splitlines()[0][:80]})") from None
    try:
        form = canonical(header)
    except (ValueError, TypeError, RecursionError):
        raise OrderRefused("header is not in canonical form") from None
    if form != line:
        raise OrderRefused("header is not in canonical form (sorted keys, no spaces, ASCII)")
    return header


def check_header(header: Any) -> None:
    """Refuse a header that is not an order's: its fields, their types and ranges."""
    if not isinstance(header, dict):
        raise OrderRefused("header is not a JSON object")
    action = header.get("action")
    if not isinstance(action, str) or action not in FIELDS:
        raise OrderRefused(f"header: action {_shown(action)} is not install or rollback")
    _exact_fields(header, FIELDS[action], "header")
    if not isinstance(header["rollout"], str) or not ROLLOUT_FORM.fullmatch(header["rollout"]):
        raise OrderRefused(f"header: rollout {_shown(header['rollout'])} is not 1..64 letters, digits, '.', '_' or '-'")
    if not is_unix_time(header["issued"]):
        raise OrderRefused(f"header: issued {_shown(header['issued'])} is not a unix time")
    _text(header["by"], MAX_NAME, "header: by")
    if not isinstance(header["key_id"], str) or not KEY_ID_FORM.fullmatch(header["key_id"]):
        raise OrderRefused("header: key_id is not 16 hex digits")
    if action == "rollback":
        _sha256(header["from_sha256"], "header: from_sha256")
        return
    if not isinstance(header["allow_older"], bool):
        raise OrderRefused("header: allow_older is not true or false")
    check_model_fields(header["model"])
    check_gate(header["gate"])


def check_model_fields(model: Any) -> None:
    if not isinstance(model, dict):
        raise OrderRefused("header: model is not an object")
    _exact_fields(model, MODEL_FIELDS, "header: model")
    _text(model["name"], MAX_NAME, "header: model name")
    version = model["version"]
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise OrderRefused(f"header: model version {_shown(version)} is not a whole number >= 1")
    _sha256(model["sha256"], "header: model sha256")
    size = model["size"]
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_MODEL:
        raise OrderRefused(f"header: model size {_shown(size)} is not 1..{MAX_MODEL} bytes")
    problem = label_problem(model["labels"])
    if problem:
        raise OrderRefused(f"header: model labels: {problem}")
    card = model["card"]
    if not isinstance(card, dict) or len(card) > MAX_CARD:
        raise OrderRefused(f"header: model card is not an object of at most {MAX_CARD} figures")
    for key, value in card.items():
        if len(key) > 64 or not _card_value(value):
            raise OrderRefused(f"header: model card {_shown(key)} is not a number or a short text")


def check_gate(gate: Any) -> None:
    if not isinstance(gate, dict):
        raise OrderRefused("header: gate is not an object")
    _exact_fields(gate, set(GATE_RANGES), "header: gate")
    for key, (least, most, whole) in GATE_RANGES.items():
        value = gate[key]
        if not _number(value, least, most) or (whole and not isinstance(value, int)):
            kind = "a whole number" if whole else "a number"
            raise OrderRefused(f"header: gate {key} {_shown(value)} is not {kind} in {least:g}..{most:g}")
    if gate["max_seconds"] < gate["seconds"]:
        raise OrderRefused("header: gate max_seconds is below its seconds")


def check_model_bytes(header: dict, model_bytes: bytes) -> None:
    """The model bytes an order carries against its (checked) header: size, then sha256."""
    if header["action"] == "rollback":
        if model_bytes:
            raise OrderRefused("a rollback order carries no model", header)
        return
    size = header["model"]["size"]
    if len(model_bytes) < size:
        raise OrderRefused(f"model truncated: {len(model_bytes)} of {size} bytes", header)
    if len(model_bytes) > size:
        raise OrderRefused(f"model longer than signed: {len(model_bytes)} of {size} bytes", header)
    if hashlib.sha256(model_bytes).hexdigest() != header["model"]["sha256"]:
        raise OrderRefused("sha256 does not match", header)


def _exact_fields(record: dict, expected: set, where: str) -> None:
    missing, extra = sorted(expected - set(record)), sorted(set(record) - expected)
    if missing:
        raise OrderRefused(f"{where}: missing {', '.join(missing)}")
    if extra:
        raise OrderRefused(f"{where}: unknown field {_shown(extra[0])}")


def is_unix_time(value: Any) -> bool:
    """A JSON number that can be a unix time (an order's `issued`)."""
    return _number(value, 0, 1e11)


def _number(value: Any, least: float, most: float) -> bool:
    """A JSON number in least..most: not a bool, not NaN (an int of any size compares without overflow)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (isinstance(value, int) or math.isfinite(value)) and least <= value <= most


def is_text(value: Any, most: int) -> bool:
    """A printable text of 1..`most` characters (nothing a log line or a terminal must not be given)."""
    return isinstance(value, str) and 1 <= len(value) <= most and not any(unprintable(c) for c in value)


def _text(value: Any, most: int, where: str) -> None:
    if not is_text(value, most):
        raise OrderRefused(f"{where} is not a printable text of 1..{most} characters")


def _sha256(value: Any, where: str) -> None:
    if not isinstance(value, str) or not SHA256_FORM.fullmatch(value):
        raise OrderRefused(f"{where} is not 64 lowercase hex digits")


def _shown(value: Any) -> str:
    """A hostile value, shown short on one line."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
