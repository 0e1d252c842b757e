# SPDX-License-Identifier: MIT
"""semfocus inside PyTorch: ``attention(q, k, v, policy)``, a differentiable custom operator over
semfocus's SIMD backend (CPU) and CUDA backend, with the library's policies (see
``semfocus_torch.policies``)."""
from .ops import attention, cuda_kernels
from .policies import (Policy, absolute_threshold, banded, block_local, bottom_k, causal, dense,
                       explicit_mask, random_k, strided, threshold, top_k, with_global)

__all__ = ["attention", "cuda_kernels", "Policy", "dense", "causal", "banded", "block_local",
           "strided", "explicit_mask", "with_global", "random_k", "top_k", "bottom_k", "threshold",
           "absolute_threshold"]
__version__ = "0.1.0"
