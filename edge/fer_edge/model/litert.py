"""Find a TFLite interpreter without TensorFlow: LiteRT, then tflite-runtime.

ai-edge-litert is the maintained successor of tflite-runtime and a dependency of
fer-edge, so the fallback only serves an old device image that has tflite-runtime alone.
There is deliberately no tensorflow.lite fallback (issue 2 asked for one): the device side
never imports TensorFlow, and a desktop that has TensorFlow has LiteRT too, because
fer-edge depends on it. The choice is made once, on first use.
"""

import ctypes
import functools
import os
import sys
import tempfile
from typing import Any, Optional, Tuple

from ..core.errors import UserError


class RuntimeMissing(UserError):
    pass


@functools.lru_cache(maxsize=1)
def interpreter_api() -> Tuple[Any, Any, str]:
    """(Interpreter class, load_delegate function, name of the package used)."""
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate
        return Interpreter, load_delegate, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter, load_delegate
        return Interpreter, load_delegate, "tflite-runtime"
    except ImportError:
        raise RuntimeMissing("no TFLite runtime found: pip install ai-edge-litert") from None


EDGETPU_LIBRARY = "libedgetpu.so.1"


def make_interpreter(model_bytes: bytes, threads: int = 1, delegate: Optional[str] = None) -> Any:
    """An interpreter over `model_bytes`; delegate is None or 'edgetpu'."""
    Interpreter, load_delegate, _ = interpreter_api()
    delegates = []
    if delegate == "edgetpu":
        try:
            # Loaded here first: the runtime's Delegate, failing to load it, leaves an object
            # whose clean-up prints a traceback when it is collected.
            ctypes.CDLL(EDGETPU_LIBRARY)
            delegates.append(load_delegate(EDGETPU_LIBRARY))
        except (ValueError, OSError) as exc:
            raise RuntimeMissing(f"Edge TPU delegate unavailable: cannot load {EDGETPU_LIBRARY} "
                                 f"(install libedgetpu1-std and plug in the Coral): {exc}") from None
    elif delegate not in (None, "cpu"):
        raise RuntimeMissing(f"unknown delegate {delegate!r}; choose cpu or edgetpu")
    return Interpreter(model_content=model_bytes, num_threads=threads, experimental_delegates=delegates or None)


XNNPACK_NOTICE = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
_notice_passed = False


def allocate_tensors(interpreter: Any) -> None:
    """interpreter.allocate_tensors(), keeping the runtime's one-time XNNPACK notice off stderr.

    The runtime writes it from C++ straight to file descriptor 2 on the first allocation in a
    process, so that first allocation runs with descriptor 2 caught in a file; everything else
    it wrote is passed on unchanged.
    """
    global _notice_passed
    if _notice_passed:
        interpreter.allocate_tensors()
        return
    _notice_passed = True
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        interpreter.allocate_tensors()
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            interpreter.allocate_tensors()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().splitlines(keepends=True)
                    if not line.startswith(XNNPACK_NOTICE)]
            if kept:
                os.write(2, b"".join(kept))
