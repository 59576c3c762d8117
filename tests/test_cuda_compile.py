"""Compile check of the CUDA sources on a machine without a GPU: every .cu in csrc/ through nvcc
for sm_90, and the torch glue files of csrc/cuda through the host compiler (syntax only)."""
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
