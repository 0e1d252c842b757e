# SPDX-License-Identifier: MIT
"""The operator: ``attention(q, k, v, policy, scale=None)``, and the torch.library rules of
semfocus::forward and semfocus::backward (their CPU and CUDA kernels are in the C++ extension,
_C): fake (meta) implementations for torch.compile, and the autograd formula, which hands the
forward's record (row log-sum-exp, row statistics, kept sets) to the library's exact backward."""
from typing import Optional

import torch

from . import _C  # registers the semfocus:: operators
from .policies import Policy

__all__ = ["attention", "cuda_kernels"]

#: Whether this build of the package has the CUDA kernels (built with nvcc and a CUDA torch).
cuda_kernels: bool = bool(_C.cuda_kernels)


def _empty_like_layout(ref: torch.Tensor, last: int) -> torch.Tensor:
    """As the C++ side: [ref.shape[:3], last], outer axes ordered as ref's strides (as those of
    its contiguous copy when its last axis is strided), rows contiguous."""
    copied = ref.stride(3) != 1 and ref.size(3) > 1
    order = [0, 1, 2] if copied else sorted(range(3), key=lambda a: -ref.stride(a))  # stable
    t = ref.new_empty([ref.size(a) for a in order] + [last])
    inverse = [0, 0, 0, 3]
    for x, a in enumerate(order):
        inverse[a] = x
    return t.permute(inverse)


@torch.library.register_fake("semfocus::forward")
def _forward_fake(q, k, v, policy, ints, floats, mask, scale):
    # The record's tensors are CPU tensors on every device (the library's record is a host object).
    ctx = torch.library.get_ctx()
    rows = q.size(0) * q.size(1) * q.size(2)
    return (_empty_like_layout(q, v.size(3)), torch.empty((rows,), dtype=torch.float64),
            torch.empty((ctx.new_dynamic_size(),), dtype=torch.uint8),
            torch.empty((ctx.new_dynamic_size(),), dtype=torch.int64),
            torch.empty((ctx.new_dynamic_size(),), dtype=torch.int32))


@torch.library.register_fake("semfocus::backward")
def _backward_fake(d_out, q, k, v, out, policy, ints, floats, mask, scale, lse, stats,
                   selection_offsets, selection):
    return (_empty_like_layout(q, q.size(3)), _empty_like_layout(k, k.size(3)),
            _empty_like_layout(v, v.size(3)))


def _setup_context(ctx, inputs, output):
    q, k, v, policy, ints, floats, mask, scale = inputs
    out, lse, stats, offsets, selection = output
    ctx.call = (policy, ints, floats, scale, mask is not None)
    ctx.save_for_backward(q, k, v, out, lse, stats, offsets, selection,
                          *(() if mask is None else (mask,)))
    ctx.mark_non_differentiable(lse, stats, offsets, selection)


def _backward(ctx, d_out, *unused):
    policy, ints, floats, scale, has_mask = ctx.call
    q, k, v, out, lse, stats, offsets, selection, *mask = ctx.saved_tensors
    dq, dk, dv = torch.ops.semfocus.backward(d_out, q, k, v, out, policy, ints, floats,
                                             mask[0] if has_mask else None, scale, lse, stats,
                                             offsets, selection)
    return dq, dk, dv, None, None, None, None, None


torch.library.register_autograd("semfocus::forward", _backward, setup_context=_setup_context)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, policy: Policy,
              scale: Optional[float] = None) -> torch.Tensor:
    """Attention whose key selection is `policy`: out_i = sum_j P_ij v_j with P the softmax of the
    scaled scores s_ij = scale q_i . k_j over the keys the policy keeps (0 for an empty row).

    q [batch, heads, n_q, d], k [batch, heads, n_k, d], v [batch, heads, n_k, d_v]; any strides
    (a [batch, seq, heads, dim] tensor passes as ``x.transpose(1, 2)``, without a copy; a last
    axis of stride != 1 is copied once). Returns out [batch, heads, n_q, d_v], laid out as q.
    Differentiable in q, k and v with the library's exact backward (the kept set held constant,
    never re-selected). CPU: float32 or float64, on torch.get_num_threads() threads of PyTorch's
    intra-op pool, the same bits for any thread count. CUDA (when the package was built with nvcc,
    see ``cuda_kernels``): float32, float16 and bfloat16 by the tiled kernels (float scores and
    sums), float64 by the naive ones, on the current stream of q's device; each call waits for its
    kernels (the forward record is copied to host memory) and the backward re-derives the kept
    sets from the recorded row statistics. All tensors on one device. scale defaults to
    1 / sqrt(d).
    Cost: O(batch heads n_q n_k (d + d_v)) time for dense and row policies (banded and block-local:
    O(n k d)); memory O(batch heads n_q) plus the kept pairs of top-k-like policies, never n x n.
    Raises ValueError for shapes, dtypes, devices or policy parameters the library rejects, with
    its message.
    """
    if not isinstance(policy, Policy):
        raise TypeError("semfocus_torch.attention: policy must be a semfocus_torch policy "
                        f"(e.g. semfocus_torch.top_k(8)), got {type(policy).__name__}")
    name, ints, floats, mask = policy.spec()
    return torch.ops.semfocus.forward(q, k, v, name, list(ints), list(floats), mask,
                                      None if scale is None else float(scale))[0]
