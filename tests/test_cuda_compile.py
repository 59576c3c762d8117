"""Compile check of the CUDA sources on a machine without a GPU: every .cu in csrc/ through nvcc
for sm_90, and the torch glue files of csrc/cuda through the host compiler (syntax only); and the one
CUDA error check (csrc/cuda/cuda_check.h): its message names the error, and every launch and runtime
call goes through it."""
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch.utils.cpp_extension

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
CU_FILES = sorted(CSRC.rglob("*.cu"))
GLUE_FILES = sorted((CSRC / "cuda").glob("*.cpp"))
NVCC = shutil.which("nvcc")


@pytest.mark.skipif(NVCC is None, reason="nvcc not found: install the CUDA toolkit to compile-check the kernels")
@pytest.mark.parametrize("source", CU_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cuda_kernel_compiles_for_sm90(source, tmp_path):
    cmd = [NVCC, "-arch=sm_90", "-std=c++17", "-O3", "--use_fast_math", "-Werror", "all-warnings",
           "-I", str(CSRC), "-c", str(source), "-o", str(tmp_path / "out.o")]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"nvcc failed on {source.name}:\n{result.stderr}"


@pytest.mark.skipif(NVCC is None, reason="nvcc not found: the CUDA headers come with the toolkit")
@pytest.mark.parametrize("source", GLUE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cuda_glue_compiles_against_torch_headers(source, tmp_path):
    # A CPU-only torch ships c10/cuda headers but not the one CMake generates for CUDA builds.
    shim = tmp_path / "c10" / "cuda" / "impl"
    shim.mkdir(parents=True)
    (shim / "cuda_cmake_macros.h").write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    cuda_include = _cuda_home() / "include"
    includes = [str(CSRC), str(tmp_path), str(cuda_include), sysconfig.get_paths()["include"],
                *torch.utils.cpp_extension.include_paths()]
    cmd = ["g++", "-std=c++20", "-fsyntax-only", "-Wall", *[f"-I{p}" for p in includes], str(source)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, f"host compile failed on {source.name}:\n{result.stderr}"


def _cuda_home() -> Path:
    """The toolkit nvcc belongs to (nvcc may be a wrapper script): nvcc's own TOP= in a dry run."""
    out = subprocess.run([NVCC, "--dryrun", "-c", "-x", "cu", "/dev/null", "-o", "/dev/null"],
                         capture_output=True, text=True)
    for line in (out.stdout + out.stderr).splitlines():
        if "TOP=" in line:
            return Path(line.split("TOP=", 1)[1].strip()).resolve()
    return Path(NVCC).resolve().parents[1]


def test_sources_exist():
    assert CU_FILES, "no .cu files found under csrc/"
    assert sys.version_info >= (3, 10)


@pytest.mark.skipif(NVCC is None, reason="nvcc not found: the CUDA runtime comes with the toolkit")
def test_cuda_error_message_names_the_error_and_the_op(tmp_path):
    # csrc/cuda/cuda_check.h is torch-free: compile and run it with nvcc alone (no GPU needed for the
    # error strings). PYCMLT_CUDA_RETURN_IF_ERROR must return the error before the code after it runs.
    program = tmp_path / "check.cpp"
    program.write_text(
        '#include <cstdio>\n#include "cuda/cuda_check.h"\n'
        "static cudaError_t fails_then_stops(int* reached) {\n"
        "  PYCMLT_CUDA_RETURN_IF_ERROR(cudaErrorInvalidValue);\n  *reached = 1;\n  return cudaSuccess;\n}\n"
        "int main() {\n  int reached = 0;\n  const cudaError_t err = fails_then_stops(&reached);\n"
        '  std::printf("%d|%d|%s", static_cast<int>(err), reached,\n'
        '              pycmlt::cuda_error_message(err, "cb_bce").c_str());\n}\n')
    binary = tmp_path / "check"
    built = subprocess.run([NVCC, "-std=c++17", "-I", str(CSRC), str(program), "-o", str(binary)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    out = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    assert out == "1|0|pycmlt cb_bce CUDA launch failed: invalid argument (cudaErrorInvalidValue = 1)"


def _launch_interfaces() -> set[str]:
    """Names of the torch-free launch functions the CUDA kernels export (int launch_*(...) in *_kernel.h)."""
    names = set()
    for header in (CSRC / "cuda").glob("*_kernel.h"):
        names.update(re.findall(r"^int (launch_\w+)\(", header.read_text(), flags=re.M))
    return names


def test_cuda_glue_checks_every_launch_with_the_shared_helper():
    launches = _launch_interfaces()
    assert len(launches) >= 5, launches
    unchecked = []
    for glue in GLUE_FILES:
        text = glue.read_text()
        for call in re.finditer(rf"\b({'|'.join(sorted(launches))})\(", text):
            if not text[:call.start()].rstrip().endswith("PYCMLT_CHECK_CUDA("):
                unchecked.append(f"{glue.name}:{text.count(chr(10), 0, call.start()) + 1} {call.group(1)}")
        assert "cudaError " not in text, f"{glue.name} formats a bare cudaError code; use PYCMLT_CHECK_CUDA"
    assert not unchecked, f"launches not wrapped in PYCMLT_CHECK_CUDA (csrc/cuda/cuda_check.h): {unchecked}"


@pytest.mark.parametrize("source", CU_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_cuda_kernels_never_discard_a_runtime_error(source):
    # A statement that is a bare runtime call drops its cudaError_t; wrap it in PYCMLT_CUDA_RETURN_IF_ERROR.
    dropped = [f"{source.name}:{number} {line.strip()}"
               for number, line in enumerate(source.read_text().splitlines(), 1)
               if re.match(r"\s*cuda[A-Z]\w*\(", line)]
    assert not dropped, f"unchecked CUDA runtime calls: {dropped}"
