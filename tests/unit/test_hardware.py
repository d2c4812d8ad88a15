"""What this machine is: the int8-or-float32 choice follows the CPU's flags, read from the
real /proc/cpuinfo; the small-or-large model choice follows the kind of core."""

import os
import platform

from fer_edge.core.hardware import INT8_DOT_FLAGS, cpu_flags, describe, fast_variant, first_cpu, model_size


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


def raspberry_pi_cpuinfo(part: str, model: str) -> str:
    """/proc/cpuinfo as a 64-bit Raspberry Pi OS prints it: four cores, then the board."""
    cores = "".join(f"processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
                    f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\n"
                    "CPU revision\t: 3\n\n" for n in range(4))
    return cores + f"Hardware\t: BCM2835\nModel\t\t: {model}\n"


def test_pi_4_and_5_get_the_large_model_pi_3_and_zero_2_the_small(tmp_path):
    boards = {"0xd08": ("Raspberry Pi 4 Model B Rev 1.4", "large"), "0xd0b": ("Raspberry Pi 5 Model B Rev 1.0", "large"),
              "0xd03": ("Raspberry Pi 3 Model B Plus Rev 1.3", "small"),
              "0xd03 ": ("Raspberry Pi Zero 2 W Rev 1.0", "small")}
    for part, (model, size) in boards.items():
        path = tmp_path / "cpuinfo"
        path.write_text(raspberry_pi_cpuinfo(part.strip(), model))
        cpu = first_cpu(str(path))
        assert cpu["cpu part"] == part.strip() and cpu["processor"] == "0"
        chosen, why = model_size(cpu, "aarch64")
        assert chosen == size, (model, why)
        assert ("Pi 4 / 5" if size == "large" else "Cortex-A53") in why


def test_a_cpu_it_cannot_rank_gets_the_small_model(tmp_path):
    assert model_size({}, "aarch64")[0] == "small"
    assert model_size({}, "armv7l")[0] == "small"
    assert model_size(first_cpu(str(tmp_path / "missing")), "riscv64") == ("small", "a CPU this cannot rank (riscv64)")
    assert model_size({}, "x86_64") == ("large", "an x86-64 CPU")


def test_this_machines_model_size():
    assert model_size() == model_size(first_cpu(), platform.machine())


def test_odd_cpuinfo_texts_still_give_an_answer(tmp_path):
    garbage = tmp_path / "garbage"
    garbage.write_bytes(bytes(range(256)) * 4)
    assert model_size(first_cpu(str(garbage)), "aarch64")[0] == "small"
    padded = tmp_path / "padded"
    padded.write_text(raspberry_pi_cpuinfo(" 0xD03 ", "Raspberry Pi 3 Model B Rev 1.2"))
    assert model_size(first_cpu(str(padded)), "aarch64")[0] == "small"
    # A Pi 4 on 32-bit Raspberry Pi OS is still a Pi 4.
    assert model_size({"cpu part": "0xd08"}, "armv7l")[0] == "large"
