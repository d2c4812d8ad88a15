"""What this machine is: a one-line description for provenance in runs and model cards,
whether its CPU has the int8 instructions that make an int8 model the fast one, and whether
its cores carry the large model at camera rate."""

import os
import platform
from typing import Dict, Optional, Set, Tuple

# CPU flags with which LiteRT's int8 kernels beat its float32 ones: x86's VNNI dot products
# and Arm's int8 dot products (a Pi 5's Cortex-A76 has them, a Pi 4's Cortex-A72 does not).
INT8_DOT_FLAGS = {"avx512_vnni", "avx_vnni", "asimddp"}


# Arm cores that run in order (a Pi Zero 2's and a Pi 3's Cortex-A53, older Pis' A7 and
# ARM1176, the A35 and A55): the small model is the one they keep up with. Out-of-order
# cores (a Pi 4's A72, a Pi 5's A76, x86) carry the large one.
IN_ORDER_ARM_PARTS = {"0xb76": "ARM1176", "0xc07": "Cortex-A7", "0xd03": "Cortex-A53", "0xd04": "Cortex-A35",
                      "0xd05": "Cortex-A55"}


def first_cpu(path: str = "/proc/cpuinfo") -> Dict[str, str]:
    """The fields /proc/cpuinfo gives the first CPU, keys in lower case."""
    fields: Dict[str, str] = {}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> Set[str]:
    """The flags (x86) or features (Arm) /proc/cpuinfo lists for the first CPU."""
    fields = first_cpu()
    return set((fields.get("flags") or fields.get("features") or "").split())


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


def model_size(cpu: Optional[Dict[str, str]] = None, machine: Optional[str] = None) -> Tuple[str, str]:
    """("large" or "small", why): the shipped model this CPU runs at camera rate with room
    to spare. An Arm CPU it cannot name gets the small one."""
    cpu = first_cpu() if cpu is None else cpu
    machine = (machine or platform.machine()).lower()
    if machine in ("x86_64", "amd64"):
        return "large", "an x86-64 CPU"
    part = cpu.get("cpu part", "").strip().lower()
    if part in IN_ORDER_ARM_PARTS:
        return "small", f"an in-order {IN_ORDER_ARM_PARTS[part]} CPU (Pi 3 / Zero 2 class)"
    if machine.startswith(("aarch64", "arm")) and part.startswith("0x"):
        return "large", f"an out-of-order Arm CPU (part {part}: Pi 4 / 5 class)"
    return "small", f"a CPU this cannot rank ({machine}{', part ' + part if part else ''})"


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
