"""The operator's kernel sets (operators/library_init.cc): the widest the CPU has is chosen when
the library loads, LCNN_ISA forces one, a set the CPU lacks is an error at load (never SIGILL),
the whole operator test module passes on every set this host runs, and code shared between
sets in the library is the copy compiled for the narrowest CPU that can reach it."""
import re
import subprocess
import textwrap

import pytest
from conftest import DEFAULT_KERNEL_SET, KERNEL_SETS, PY, ROOT, run

from lcnn_gluon import ops

CHOICE = textwrap.dedent("""
    from lcnn_gluon import ops
    try:
        print("kernels", ops.kernel_isa())
    except Exception as e:
        print("refused:", str(e).strip().splitlines()[-1])
""")


def chosen(env):
    return run(PY, "-c", CHOICE, env=env).stdout


def test_the_widest_set_the_cpu_has_is_the_default(lcnn_ops):
    assert f"kernels {DEFAULT_KERNEL_SET}" in chosen({"LCNN_ISA": ""})
    assert ops.kernel_isa() in KERNEL_SETS


def test_lcnn_isa_forces_a_set(lcnn_ops):
    assert "kernels avx2\n" in chosen({"LCNN_ISA": "avx2"})
    assert "kernels avx2pair\n" in chosen({"LCNN_ISA": "avx2pair"})


def test_a_cpu_without_avx512_takes_avx2_and_refuses_a_forced_avx512(lcnn_ops):
    without = {"LCNN_CPU_FLAGS": "avx2 fma"}  # admits AVX2 and FMA only, on any host
    assert "kernels avx2\n" in chosen(without)
    out = chosen(dict(without, LCNN_ISA="avx512"))
    assert "refused: " in out and "LCNN_ISA=avx512 needs a CPU with avx512f; this CPU lacks avx512f" in out


def test_an_unknown_set_is_an_error_naming_the_choices(lcnn_ops):
    out = chosen({"LCNN_ISA": "sse9"})
    assert "LCNN_ISA=sse9 is not a kernel set; use one of avx512, avx2, avx2pair" in out


@pytest.mark.parametrize("isa", [s for s in KERNEL_SETS if s != DEFAULT_KERNEL_SET])
def test_operator_tests_pass_on_every_other_set(lcnn_ops, isa):
    """tests/test_ops.py (shapes, strides, densities, pooling, shortcuts, bad input) with the
    set forced; the default set runs it in the main session."""
    proc = run(PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_ops.py",
               env={"LCNN_ISA": isa}, check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert re.search(r"\d+ passed", proc.stdout)


# The Makefile's object groups, narrowest first, with the widest registers their code may
# use: portable code runs before the CPU check, AVX-512 code only after initialize() chose it.
GROUP_WIDTHS = [("PORTABLE_OBJS", 0), ("AVX2_OBJS", 256), ("AVX512_OBJS", 512)]


def makefile_objects(variable: str) -> list:
    """The object file names the Makefile lists in ``variable`` (continuation lines joined)."""
    with open(f"{ROOT}/operators/Makefile") as f:
        text = f.read().replace("\\\n", " ")
    value = re.search(rf"^{variable} := (.*)$", text, re.M).group(1)
    return [name.replace("$(BUILD)/", "") for name in value.split()]


def register_width(instruction: str) -> int:
    if "%zmm" in instruction or re.search(r"%k[0-7]\b", instruction):
        return 512
    return 256 if "%ymm" in instruction else 0


def test_shared_code_in_the_library_is_the_narrowest_copy(lcnn_ops):
    """Objects compiled for different CPUs share the C++ library's inline functions (e.g.
    std::vector<float>::_M_fill_assign, which the AVX-512 object compiles with zmm registers),
    and the linker keeps one copy: it must be one every caller's CPU can run."""
    build = f"{ROOT}/operators/build"
    allowed = {}  # symbol -> widest registers allowed: those of the narrowest object defining it
    for variable, width in reversed(GROUP_WIDTHS):
        objects = makefile_objects(variable)
        assert objects, variable
        for name in objects:
            listing = subprocess.run(["nm", "--defined-only", f"{build}/{name}"], check=True,
                                     capture_output=True, text=True).stdout
            for line in listing.splitlines():
                parts = line.split()
                if len(parts) == 3 and parts[1] in "TW":
                    allowed[parts[2]] = width
    code = subprocess.run(["objdump", "-d", "--no-show-raw-insn", f"{build}/{ops.LIBRARY}"], check=True,
                          capture_output=True, text=True).stdout
    used, current = {}, None
    for line in code.splitlines():
        head = re.match(r"^[0-9a-f]+ <(.+)>:$", line)
        if head:
            current = head.group(1)
            used[current] = 0
        elif current:
            used[current] = max(used[current], register_width(line))
    assert used.get("lcnn_kernel_isa") == 0
    assert any(w == 512 for w in used.values()), "the AVX-512 kernels are missing from the library"
    shared_wide = {s: w for s, w in used.items() if s in allowed and w > allowed[s]}
    assert not shared_wide, shared_wide


@pytest.mark.parametrize("isa", ["Avx2", "Avx512"])
@pytest.mark.parametrize("kernel, full_size", [("AccumulateTile", "kTileVectors"),
                                               ("GemmStrip", "kPanelRows, 2, false, false"),
                                               ("GemmStrip", "kPanelRows, 2, true, false"),
                                               ("AccumulateRows", "1, kRowTileVectors")])
def test_the_vector_kernels_keep_their_accumulators_in_registers(lcnn_ops, isa, kernel, full_size):
    """GCC kept the accumulators of AccumulateTile (the lookups) and of GemmStrip (the dictionary
    product) in memory, storing all of them on every step, until the loops over them were fully
    unrolled: those loops then ran at half their FMA rate or less, bound by stores. Every compiled
    size is checked (for AccumulateRows every rows x registers; GemmStrip with row pointers and
    strided, skewed or not), the full one among them.
    (Avx2Pair needs twice the registers for the same tile and spills.)"""
    obj = f"{ROOT}/operators/build/lookup_conv_{isa.lower()}.o"
    code = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", obj], check=True, capture_output=True,
                          text=True).stdout
    bodies = dict(re.findall(rf"^[0-9a-f]+ <void {kernel}<{isa}, ([\w, ]+)>\(.*?>:\n(.*?)\n\n", code, re.M | re.S))
    isa_source = open(f"{ROOT}/operators/lookup_conv_isa.h").read().split(f"struct {isa} {{")[1]
    full = re.sub(r"k\w+", lambda name: re.search(rf"{name.group(0)} = (\d+)", isa_source).group(1), full_size)
    assert full in bodies, f"{kernel}<{isa}, {full}> not found in {obj}"
    spills = {v: re.findall(r"vmov\w*\s+%[yz]mm\d+,.*\(%rsp\)", body) for v, body in bodies.items()}
    assert not any(spills.values()), spills


def test_only_panels_of_more_rows_than_l1_ways_are_skewed(lcnn_ops):
    """AVX-512's 12-row panels are compiled skewed as well (for rows of D that share L1 sets), with
    and without row pointers; AVX2's 6-row panels, which fit L1's 8 ways, never are."""
    names = {isa: set(re.findall(rf"<void GemmStrip<{isa.capitalize()}, (\d+), \d, (?:true|false), true>",
                                 subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn",
                                                 f"{ROOT}/operators/build/lookup_conv_{isa}.o"],
                                                check=True, capture_output=True, text=True).stdout))
             for isa in ("avx2", "avx512")}
    ways = int(re.search(r"kL1Ways = (\d+)", open(f"{ROOT}/operators/lookup_conv_gemm.h").read()).group(1))
    assert names["avx2"] == set()
    assert "12" in names["avx512"] and all(int(rows) > ways for rows in names["avx512"]), names


def test_class_tiles_keep_their_accumulators_in_registers(lcnn_ops):
    """AVX-512's class tiles (every width compiled, with and without shifts; 28 + 1 registers and a
    broadcast use 30 of the 32) keep their accumulators in registers; plain AVX2, whose 16 registers
    leave class tiles too narrow to pay, compiles none."""
    code = {isa: subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn",
                                 f"{ROOT}/operators/build/lookup_conv_{isa}.o"],
                                check=True, capture_output=True, text=True).stdout for isa in ("avx2", "avx512")}
    bodies = dict(re.findall(r"^[0-9a-f]+ <void AccumulateClassTile<Avx512, (\d+, \w+)>\(.*?>:\n(.*?)\n\n",
                             code["avx512"], re.M | re.S))
    isa_source = open(f"{ROOT}/operators/lookup_conv_isa.h").read().split("struct Avx512 {")[1]
    widest = re.search(r"kClassTileVectors = (\d+)", isa_source).group(1)
    assert {f"{widest}, true", f"{widest}, false", "1, true"} <= set(bodies), sorted(bodies)
    spills = {v: re.findall(r"vmov\w*\s+%zmm\d+,.*\(%rsp\)", body) for v, body in bodies.items()}
    assert not any(spills.values()), spills
    assert "AccumulateClassTile<Avx2," not in code["avx2"]
