# SPDX-License-Identifier: MIT
"""Builds semfocus_torch._C, the operator's CPU kernels, from the library's headers
(../include) with torch's C++ extension tooling. Environment:
  SEMFOCUS_MARCH   the -march of the kernels (default: native, the building machine's ISA)
  XSIMD_INCLUDE    the directory holding xsimd/xsimd.hpp (default: /usr/include, libxsimd-dev)
  MAX_JOBS         parallel compile jobs (torch's ninja build)
"""
import os
from pathlib import Path

import torch
from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension, include_paths

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

setup(
    ext_modules=[CppExtension("semfocus_torch._C", sources, include_dirs=dirs,
                              extra_compile_args={"cxx": flags}, extra_link_args=link)],
    cmdclass={"build_ext": BuildExtension},
)
