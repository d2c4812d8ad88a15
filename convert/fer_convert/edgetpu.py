"""Will this model compile for a Coral Edge TPU? And compile it when the compiler is here.

The Edge TPU runs only full-integer models with static shapes and a fixed set of ops
(coral.ai's "TensorFlow models on the Edge TPU" page); the first unsupported op splits the
graph, and everything after it runs on the CPU.
"""

import os
import shutil
import subprocess
import tempfile
from typing import List, Tuple

import numpy as np

from fer_edge.model.litert import make_interpreter
from fer_edge.model.metadata import embed_metadata, read_metadata, strip_metadata

# Ops the Edge TPU compiler maps to the TPU (quantized forms), from Coral's op table.
EDGETPU_OPS = {
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXP",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "LSTM", "MAX_POOL_2D", "MAXIMUM",
    "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "RELU",
    "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR",
    "RSQRT", "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUARED_DIFFERENCE", "SQUEEZE",
    "STRIDED_SLICE", "SUB", "SUM", "TANH", "TRANSPOSE_CONV", "DEQUANTIZE",
}
INTEGER_TYPES = (np.int8, np.uint8, np.int32, np.int16)


def check(model_bytes: bytes) -> Tuple[List[str], List[str]]:
    """The problems (none: compatible) with running this model on an Edge TPU, and the ops it uses."""
    interpreter = make_interpreter(strip_metadata(model_bytes))
    problems = []
    ops = interpreter._get_ops_details()
    for op in ops:
        if op["op_name"] not in EDGETPU_OPS:
            problems.append(f"op {op['op_name']} is not supported by the Edge TPU")
    for tensor in interpreter.get_tensor_details():
        if tensor["dtype"] not in INTEGER_TYPES:
            problems.append(f"tensor {tensor['name']!r} is {np.dtype(tensor['dtype']).name}, not integer")
        if -1 in list(tensor.get("shape_signature", tensor["shape"])):
            problems.append(f"tensor {tensor['name']!r} has a dynamic shape {list(tensor['shape_signature'])}")
    return sorted(set(problems)), sorted({op["op_name"] for op in ops})


class CompilerMissing(RuntimeError):
    pass


def compile_for_edgetpu(model_bytes: bytes) -> bytes:
    """Run edgetpu_compiler and return the compiled model with the metadata carried over."""
    compiler = shutil.which("edgetpu_compiler")
    if not compiler:
        raise CompilerMissing(
            "edgetpu_compiler is not on PATH: it runs on x86-64 Debian/Ubuntu only; install it from "
            "Coral's apt repository (package edgetpu-compiler), then run fer-convert --edgetpu again")
    metadata = read_metadata(model_bytes)
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "model.tflite")
        with open(source, "wb") as f:
            f.write(strip_metadata(model_bytes))
        result = subprocess.run([compiler, "-s", "-o", tmp, source], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"edgetpu_compiler failed: {result.stderr.strip() or result.stdout.strip()}")
        with open(os.path.join(tmp, "model_edgetpu.tflite"), "rb") as f:
            compiled = f.read()
    metadata = dict(metadata, edgetpu={"compiled": True, "compiler_log": result.stdout[-2000:]})
    return embed_metadata(compiled, metadata)
