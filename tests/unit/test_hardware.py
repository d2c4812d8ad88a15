"""What this machine is: the int8-or-float32 choice follows the CPU's flags, read from the
real /proc/cpuinfo."""

import os
import platform

from fer_edge.core.hardware import INT8_DOT_FLAGS, cpu_flags, describe, fast_variant


def test_int8_dot_products_choose_int8_on_any_cpu():
    for flag in INT8_DOT_FLAGS:
        variant, why = fast_variant({"sse2", flag})
        assert variant == "int8" and flag in why


def test_without_dot_products_only_x86_prefers_float32():
    variant, why = fast_variant(set())
    if platform.machine().lower() in ("x86_64", "amd64", "i686"):
        assert variant == "float32" and "without VNNI" in why
    else:
        assert variant == "int8" and "Arm" in why


def test_this_machines_flags_and_description():
    flags = cpu_flags()
    assert flags, "/proc/cpuinfo lists the first CPU's flags or features"
    assert fast_variant() == fast_variant(flags)
    line = describe()
    assert f"{os.cpu_count()} cores" in line and f"Python {platform.python_version()}" in line and "\n" not in line
