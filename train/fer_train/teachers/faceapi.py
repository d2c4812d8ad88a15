"""face-api.js's expression network (FaceExpressionNet, MIT) as a teacher for distillation.

It was trained on real photos (posed portraits, actor video, web images), which FER2013 is
not, so it knows faces our own models never saw. Its weights come from the npm registry
package `@vladmandic/face-api`, checked against sha256 digests pinned here; our code reads
the TF.js weight format and rebuilds the network in Keras, so no converter of anybody
else's sits in the training path. The student that ships is ours; this network only
teaches it.
"""

import hashlib
import io
import json
import os
import tarfile
import urllib.error
import urllib.request
from typing import Any, Dict, Optional, Tuple

import numpy as np

from fer_edge.core.atomic import sha256_of, write_atomically
from fer_edge.core.errors import UserError
from fer_edge.core.labels import LABELS

PACKAGE = "@vladmandic/face-api"
VERSION = "1.7.15"
TARBALL_SHA256 = "0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031"
MANIFEST = "face_expression_model-weights_manifest.json"
WEIGHTS = "face_expression_model.bin"
FILE_SHA256 = {
    MANIFEST: "5b349c17c7836da506e03422cd6461c74085d8bb2713ad4114647dc5d28174c8",
    WEIGHTS: "9a9840f2cf1f4c7eab95f197512569345c00d2426754d4608b92af30e0300f3d",
}
DEFAULT_REGISTRY = "https://registry.npmjs.org"

# The network's output order, and its input: RGB 112x112, mean colour subtracted, /255.
FACEAPI_LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
FACEAPI_TO_FER = {"neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry",
                  "fearful": "fear", "disgusted": "disgust", "surprised": "surprise"}
INPUT_SIZE = 112
MEAN_RGB = (122.782, 117.001, 104.298)
BLOCKS = ("dense0", "dense1", "dense2", "dense3")


class TeacherFetchError(UserError):
    """The teacher's files could not be fetched or did not check out; one line for the user."""


def fer_order() -> np.ndarray:
    """Indices that put the network's outputs in our label order."""
    ours = [FACEAPI_TO_FER[name] for name in FACEAPI_LABELS]
    return np.array([ours.index(label) for label in LABELS])


def cache_dir() -> str:
    """$XDG_CACHE_HOME/fer-edge/teachers (default ~/.cache/...)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(cache, "fer-edge", "teachers", f"face-api-{VERSION}")


def registry() -> str:
    """The npm registry to fetch from: $npm_config_registry (as npm reads it) or npm's own."""
    return (os.environ.get("npm_config_registry") or DEFAULT_REGISTRY).rstrip("/")


def tarball_url(base: Optional[str] = None) -> str:
    name = PACKAGE.split("/")[-1]
    return f"{base or registry()}/{PACKAGE}/-/{name}-{VERSION}.tgz"


def unpack_checked(tarball: bytes, target: str, tarball_sha256: str = TARBALL_SHA256) -> Tuple[str, str]:
    """Check the package's sha256, then each needed file's, and store the two files in
    `target`; nothing is stored unless everything checks out."""
    got = hashlib.sha256(tarball).hexdigest()
    if got != tarball_sha256:
        raise TeacherFetchError(f"{PACKAGE} {VERSION}: sha256 {got} is not the pinned {tarball_sha256}; nothing stored")
    files = {}
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        for name, digest in FILE_SHA256.items():
            member = archive.extractfile(f"package/model/{name}")
            data = member.read() if member else b""
            if hashlib.sha256(data).hexdigest() != digest:
                raise TeacherFetchError(f"{PACKAGE} {VERSION}: model/{name} is not the pinned file; nothing stored")
            files[name] = data
    os.makedirs(target, exist_ok=True)
    for name, data in files.items():
        write_atomically(os.path.join(target, name), data)
    return os.path.join(target, MANIFEST), os.path.join(target, WEIGHTS)


def fetch(target: Optional[str] = None, base: Optional[str] = None,
          tarball_sha256: str = TARBALL_SHA256, timeout: float = 120) -> Tuple[str, str]:
    """The manifest and weights files, downloaded once and kept in `target` (the cache)."""
    target = target or cache_dir()
    paths = os.path.join(target, MANIFEST), os.path.join(target, WEIGHTS)
    if all(os.path.isfile(p) and sha256_of(p) == FILE_SHA256[os.path.basename(p)] for p in paths):
        return paths
    url = tarball_url(base)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            tarball = response.read()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise TeacherFetchError(f"cannot download {PACKAGE} {VERSION} from {url} (offline?): {reason}") from None
    return unpack_checked(tarball, target, tarball_sha256)


def read_tfjs_weights(manifest_path: str, weights_path: str) -> Dict[str, np.ndarray]:
    """Named float32 arrays from a TF.js weights manifest and its binary shard(s).

    Quantized weights (uint8/uint16) are stored as q and read back as q * scale + min,
    as TF.js dequantizes them; unquantized float32 arrays are taken as they are.
    """
    with open(manifest_path) as f:
        manifest = json.load(f)
    folder = os.path.dirname(weights_path)
    arrays = {}
    for group in manifest:
        data = b"".join(_read(os.path.join(folder, path)) for path in group["paths"])
        offset = 0
        for spec in group["weights"]:
            shape, quant = spec["shape"], spec.get("quantization")
            count = int(np.prod(shape)) if shape else 1
            dtype = np.dtype(quant["dtype"] if quant else spec["dtype"])
            raw = np.frombuffer(data, dtype.newbyteorder("<"), count, offset)
            offset += count * dtype.itemsize
            values = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"]) if quant else raw
            arrays[spec["name"]] = values.astype(np.float32).reshape(shape)
        if offset != len(data):
            raise ValueError(f"{manifest_path}: the manifest describes {offset} bytes, the shard holds {len(data)}")
    return arrays


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def build_expression_net(weights: Dict[str, np.ndarray]) -> Any:
    """The network in Keras: RGB 0..255 (N,112,112,3) -> 7 logits in face-api.js's order.

    Four dense blocks; each block's first convolution halves the size (a plain 3x3 in the
    first block, depthwise-separable after), and each later convolution sees the ReLU of
    the sum of all earlier outputs in the block. Then an average over the 7x7 map and one
    fully connected layer."""
    import keras

    image = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="rgb")
    x = keras.layers.Rescaling(1 / 255.0, offset=-np.array(MEAN_RGB) / 255.0, name="normalise")(image)
    for block in BLOCKS:
        x = _dense_block(x, block, weights)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    fc = keras.layers.Dense(7, name="fc")
    logits = fc(x)
    fc.set_weights([weights["fc/weights"], weights["fc/bias"]])
    return keras.Model(image, logits, name="face_expression_net")


def _dense_block(x: Any, block: str, weights: Dict[str, np.ndarray]) -> Any:
    import keras

    outputs: list = []
    for i in range(4):
        name = f"{block}/conv{i}"
        stride = 2 if i == 0 else 1
        if f"{name}/filters" in weights:
            layer = keras.layers.Conv2D(weights[f"{name}/filters"].shape[-1], 3, strides=stride, padding="same",
                                        name=name.replace("/", "_"))
            params = [weights[f"{name}/filters"], weights[f"{name}/bias"]]
        else:
            layer = keras.layers.SeparableConv2D(weights[f"{name}/pointwise_filter"].shape[-1], 3, strides=stride,
                                                 padding="same", name=name.replace("/", "_"))
            params = [weights[f"{name}/depthwise_filter"], weights[f"{name}/pointwise_filter"], weights[f"{name}/bias"]]
        seen = x if i == 0 else outputs[0] if i == 1 else keras.layers.ReLU()(keras.layers.Add()(outputs))
        out = layer(seen)
        layer.set_weights(params)
        outputs.append(keras.layers.ReLU()(out) if i == 0 else out)
    return keras.layers.ReLU()(keras.layers.Add()(outputs))


def build_grey48_teacher(weights: Dict[str, np.ndarray]) -> Any:
    """The network as a fer-edge model: a 48x48 grey face (0..255) in, 7 logits in our
    label order out. The face is upscaled to 112 (bilinear) and repeated in R, G and B."""
    import keras

    net = build_expression_net(weights)
    fc = net.get_layer("fc")
    order = fer_order()
    kernel, bias = fc.get_weights()
    fc.set_weights([kernel[:, order], bias[order]])
    face = keras.Input((48, 48, 1), name="face")
    large = keras.layers.Resizing(INPUT_SIZE, INPUT_SIZE, interpolation="bilinear", name="upscale")(face)
    rgb = keras.layers.Concatenate(name="grey_to_rgb")([large, large, large])
    return keras.Model(face, net(rgb), name="face_api_grey48")


def write_teacher(out: str, target: Optional[str] = None) -> str:
    """Fetch the weights and write the 48x48 grey teacher as a float32 fer-edge .tflite,
    which `fer-train fit --teacher` runs like any of our models."""
    manifest, weights = fetch(target)  # before TensorFlow loads: an offline fetch fails fast and quietly
    from fer_edge.model.metadata import embed_metadata, model_metadata
    from fer_edge.model.provenance import Provenance

    from ..networks.tflite import to_tflite

    model = build_grey48_teacher(read_tfjs_weights(manifest, weights))
    source = f"npm {PACKAGE} {VERSION} model/{WEIGHTS} (sha256 {FILE_SHA256[WEIGHTS]}, MIT)"
    metadata = model_metadata("float32", architecture="face-api.js FaceExpressionNet (teacher only)",
                              params=int(model.count_params()), provenance=Provenance(teacher_source=source).to_json())
    folder = os.path.dirname(os.path.abspath(out))
    os.makedirs(folder, exist_ok=True)
    write_atomically(out, embed_metadata(to_tflite(model), metadata))
    return out
