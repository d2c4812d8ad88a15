"""What this machine is: a one-line description for provenance in runs and model cards, and
whether its CPU has the int8 instructions that make an int8 model the fast one."""

import os
import platform
from typing import Optional, Set, Tuple

# CPU flags with which LiteRT's int8 kernels beat its float32 ones: x86's VNNI dot products
# and Arm's int8 dot products (a Pi 5's Cortex-A76 has them, a Pi 4's Cortex-A72 does not).
INT8_DOT_FLAGS = {"avx512_vnni", "avx_vnni", "asimddp"}


def cpu_flags() -> Set[str]:
    """The flags (x86) or features (Arm) /proc/cpuinfo lists for the first CPU."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("flags", "features"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def fast_variant(flags: Optional[Set[str]] = None) -> Tuple[str, str]:
    """("int8" or "float32", why) for this CPU. Only x86 without VNNI prefers float32:
    there LiteRT's int8 kernels are the slower ones; on Arm int8 is the lighter load."""
    flags = cpu_flags() if flags is None else flags
    found = sorted(flags & INT8_DOT_FLAGS)
    if found:
        return "int8", f"the CPU has int8 dot products ({', '.join(found)})"
    if platform.machine().lower() in ("x86_64", "amd64", "i686"):
        return "float32", "an x86 CPU without VNNI, where int8 kernels are slower than float32 ones"
    return "int8", "an Arm CPU, where int8 is the lighter load"


def describe() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.machine()}, Python {platform.python_version()}"
