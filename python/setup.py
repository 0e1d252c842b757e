# SPDX-License-Identifier: MIT
"""Builds semfocus_torch._C, the operator's CPU kernels, from the library's headers
(../include) with torch's C++ extension tooling. Environment:
  SEMFOCUS_MARCH   the -march of the kernels (default: native, the building machine's ISA)
  XSIMD_INCLUDE    the directory holding xsimd/xsimd.hpp (default: /usr/include, libxsimd-dev)
  MAX_JOBS         parallel compile jobs (torch's ninja build)
  SEMFOCUS_TORCH_CUDA   1: build the CUDA kernels (fail without nvcc or a CUDA build of torch);
                   0: do not; unset: build them when both are found
  TORCH_CUDA_ARCH_LIST  the GPU architectures of the CUDA kernels (default: the visible GPUs',
                   or 9.0, H100/H200, on a machine without one)
"""
import os
from pathlib import Path

import torch
from setuptools import setup
from torch.utils.cpp_extension import (CUDA_HOME, BuildExtension, CppExtension, CUDAExtension,
                                       include_paths)

here = Path(__file__).resolve().parent
include = here.parent / "include"
if not (include / "semfocus" / "semfocus.hpp").is_file():
    raise SystemExit(f"semfocus_torch: the library's headers are not at {include}; build from a "
                     "semfocus checkout (pip install --no-build-isolation ./python)")
xsimd = Path(os.environ.get("XSIMD_INCLUDE", "/usr/include"))
if not (xsimd / "xsimd" / "xsimd.hpp").is_file():
    raise SystemExit(f"semfocus_torch: xsimd/xsimd.hpp is not under {xsimd}; install libxsimd-dev "
                     "(Debian 12: xsimd 8.1) or set XSIMD_INCLUDE")

flags = ["-std=c++20", "-O3", f"-march={os.environ.get('SEMFOCUS_MARCH', 'native')}",
         "-DSEMFOCUS_HAS_XSIMD=1", "-fvisibility=hidden", "-Wall", "-Wextra"]
# at::parallel_for (the backend's worker slots, csrc/common.hpp) is inline OpenMP in torch's
# headers: without -fopenmp it runs every slot on the calling thread. Linked against libgomp.so.1,
# the extension shares the runtime torch has loaded (same soname), so there is one pool.
link = ["-pthread"]
if "OpenMP" in torch.__config__.parallel_info():
    flags.append("-fopenmp")
    link.append("-fopenmp")
# torch's headers as system headers: their warnings are not ours (-isystem overrides its -I).
flags += [f"-isystem{d}" for d in include_paths()]
# /usr/include is already searched; naming it with -I would break libstdc++'s #include_next.
dirs = [str(include)] + ([str(xsimd)] if xsimd != Path("/usr/include") else [])
sources = [f"csrc/{name}.cpp" for name in ("register", "forward", "backward")]

# The CUDA kernels (csrc/cuda_*.cu): with nvcc and a CUDA build of torch.
want_cuda = os.environ.get("SEMFOCUS_TORCH_CUDA", "")
if want_cuda not in ("", "0", "1"):
    raise SystemExit(f"semfocus_torch: SEMFOCUS_TORCH_CUDA must be 0 or 1, got {want_cuda!r}")
can_cuda = torch.version.cuda is not None and CUDA_HOME is not None
if want_cuda == "1" and not can_cuda:
    raise SystemExit("semfocus_torch: SEMFOCUS_TORCH_CUDA=1 needs nvcc (CUDA_HOME, found: "
                     f"{CUDA_HOME}) and a CUDA build of torch (torch.version.cuda: "
                     f"{torch.version.cuda})")
cuda = can_cuda and want_cuda != "0"
extension, compile_args = CppExtension, {"cxx": flags}
if cuda:
    if "TORCH_CUDA_ARCH_LIST" not in os.environ and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"  # H100/H200, as the CMake build's default
    extension = CUDAExtension
    sources += ["csrc/cuda_forward.cu", "csrc/cuda_backward.cu"]
    flags.append("-DSEMFOCUS_TORCH_CUDA=1")
    # Warnings of the host compiler as for the .cpp files; torch's and CUDA's headers as system
    # headers. The .cu files hold no SIMD code (no -march, no xsimd).
    compile_args["nvcc"] = (["-std=c++20", "-O3", "-DSEMFOCUS_TORCH_CUDA=1",
                             "-Xcompiler=-fvisibility=hidden,-Wall,-Wextra"] +
                            [a for d in include_paths(device_type="cuda") for a in ("-isystem", d)])

setup(
    ext_modules=[extension("semfocus_torch._C", sources, include_dirs=dirs,
                           extra_compile_args=compile_args, extra_link_args=link)],
    cmdclass={"build_ext": BuildExtension},
)
