# SPDX-License-Identifier: MIT
"""semfocus_torch.attention on CUDA tensors (the package's CUDA kernels, built with nvcc) against
the plain PyTorch formulation of test_attention.py and against the CPU operator: every policy in
float64 (naive kernels) and float32 (tiled kernels), float16 and bfloat16, gradcheck,
torch.compile, layouts, streams, empty rows, determinism and errors. Skipped without a GPU."""
import math
import os

import pytest
import torch

import semfocus_torch as st
from test_attention import (MASK, POLICIES, compiled_matches_eager, inputs, kept_set, margin,
                            reference)

gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
needs_kernels = pytest.mark.skipif(not st.cuda_kernels, reason="built without the CUDA kernels")


def test_cuda_kernels_are_built_where_they_can_be():
    """setup.py builds the CUDA kernels whenever nvcc and a CUDA build of torch are both present,
    unless SEMFOCUS_TORCH_CUDA=0 asked it not to."""
    from torch.utils.cpp_extension import CUDA_HOME
    expected = (torch.version.cuda is not None and CUDA_HOME is not None
                and os.environ.get("SEMFOCUS_TORCH_CUDA") != "0")
    assert st.cuda_kernels == expected


def on_cuda(policy):
    """The policy with its mask (explicit_mask, with_global over one) moved to the GPU."""
    if isinstance(policy, st.explicit_mask):
        return st.explicit_mask(policy.mask.cuda())
    return policy


@gpu
@needs_kernels
@pytest.mark.parametrize("policy", POLICIES, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_forward_and_gradients_match_reference(policy, dtype):
    q, k, v = inputs(dtype=dtype)
    s = (q.double() @ k.double().transpose(-1, -2)) / math.sqrt(q.size(-1))
    assert margin(s, policy) > 1e-4
    keep = kept_set(policy, q, k)
    d_out = torch.randn(q.shape[:3] + (v.size(-1),), dtype=dtype)
    leaves = [x.cuda().requires_grad_() for x in (q, k, v)]
    out = st.attention(*leaves, on_cuda(policy))
    grads = torch.autograd.grad(out, leaves, d_out.cuda())
    ref_leaves = [x.double().clone().requires_grad_() for x in (q, k, v)]
    ref = reference(*ref_leaves, policy, keep=keep)
    ref_grads = torch.autograd.grad(ref, ref_leaves, d_out.double())
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    assert out.device.type == "cuda" and out.dtype == dtype
    torch.testing.assert_close(out.cpu().double(), ref, **tol)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got.cpu().double(), want, **tol)


@gpu
@needs_kernels
@pytest.mark.parametrize("policy", [st.dense(), st.causal(), st.banded(5), st.top_k(4),
                                    st.threshold(0.7)], ids=repr)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_matches_reference_on_rounded_inputs(policy, dtype):
    """Scores and sums in float, results rounded once: the reference runs in float64 on the same
    (rounded) inputs, the tolerance is a few units of the 16-bit format's last place."""
    q, k, v = (x.to(dtype) for x in inputs(d=16, d_v=16, seed=11))  # margins >= 1.7e-3
    s = (q.double() @ k.double().transpose(-1, -2)) / 4
    assert margin(s, policy) > 1e-3
    d_out = torch.randn(q.shape[:3] + (16,), dtype=torch.float64).to(dtype)
    leaves = [x.cuda().requires_grad_() for x in (q, k, v)]
    out = st.attention(*leaves, policy)
    grads = torch.autograd.grad(out, leaves, d_out.cuda())
    ref_leaves = [x.double().requires_grad_() for x in (q, k, v)]
    ref = reference(*ref_leaves, policy)
    ref_grads = torch.autograd.grad(ref, ref_leaves, d_out.double())
    eps = torch.finfo(dtype).eps
    assert out.dtype == dtype
    torch.testing.assert_close(out.cpu().double(), ref, rtol=4 * eps, atol=4 * eps)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got.cpu().double(), want, rtol=8 * eps, atol=8 * eps)


@gpu
@needs_kernels
def test_cuda_matches_cpu_operator():
    q, k, v = inputs(b=2, h=2, n_q=70, n_k=90, d=32, d_v=16)
    for policy in (st.top_k(8), st.with_global(st.banded(7), 2), st.absolute_threshold(0.2)):
        torch.testing.assert_close(st.attention(q.cuda(), k.cuda(), v.cuda(), policy).cpu(),
                                   st.attention(q, k, v, policy), rtol=1e-12, atol=1e-12)


@gpu
@needs_kernels
@pytest.mark.parametrize("policy", [st.dense(), st.top_k(3), st.threshold(0.5),
                                    st.with_global(st.strided(2), 1)], ids=repr)
def test_gradcheck(policy):
    q, k, v = (x.cuda().requires_grad_()
               for x in inputs(b=1, h=2, n_q=7, n_k=9, d=4, d_v=3, seed=17))
    assert margin((q @ k.transpose(-1, -2)) / 2, policy) > 1e-3
    assert torch.autograd.gradcheck(lambda a, b, c: st.attention(a, b, c, policy), (q, k, v))


@gpu
@needs_kernels
def test_torch_compile_fullgraph_and_streams():
    q, k, v = (x.cuda().float().requires_grad_()
               for x in inputs(b=1, h=2, n_q=16, n_k=16, d=8, d_v=8))
    want = compiled_matches_eager(q, k, v)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = st.attention(q, k, v, st.top_k(4))
        on_stream = torch.autograd.grad((out * 2).sum(), (q, k, v))
    stream.synchronize()
    for a, b in zip(on_stream, want):
        assert torch.equal(a, b)


@gpu
@needs_kernels
def test_layouts_empty_rows_and_determinism():
    q, k, v = (x.cuda().float() for x in inputs(n_q=23))
    bshd = [x.transpose(1, 2).contiguous() for x in (q, k, v)]
    out = st.attention(*(x.transpose(1, 2) for x in bshd), st.top_k(5))
    assert out.transpose(1, 2).is_contiguous()
    assert torch.equal(out, st.attention(q, k, v, st.top_k(5)))
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.size(-1))
    tau = s.amax(-1).median().item() + 1e-3
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    out = st.attention(*leaves, st.absolute_threshold(tau))
    empty = ~(s >= tau).any(-1)
    assert empty.any() and not out.isnan().any() and (out[empty] == 0).all()
    out.sum().backward()
    assert not any(x.grad.isnan().any() for x in leaves)
    runs = []
    for _ in range(2):
        leaves = [x.clone().requires_grad_() for x in (q, k, v)]
        o = st.attention(*leaves, st.top_k(5))
        o.backward(torch.ones_like(o))
        runs.append([o.detach()] + [x.grad for x in leaves])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


@gpu
@needs_kernels
def test_errors():
    q, k, v = (x.cuda() for x in inputs())
    with pytest.raises(ValueError, match="k must be on q's device"):
        st.attention(q, k.cpu(), v, st.dense())
    with pytest.raises(ValueError, match="q must be on the CUDA device"):
        st.attention(q.cpu(), k, v, st.dense())
    with pytest.raises(ValueError, match="mask must be"):
        st.attention(q, k, v, st.explicit_mask(MASK))
    with pytest.raises(ValueError, match="float16 or bfloat16"):
        st.attention(q.int(), k.int(), v.int(), st.dense())
    with pytest.raises(ValueError, match="k must be in"):
        st.attention(q, k, v, st.top_k(100))


@gpu
@pytest.mark.skipif(st.cuda_kernels, reason="built with the CUDA kernels")
def test_build_without_cuda_kernels_says_so():
    q, k, v = (x.cuda() for x in inputs())
    with pytest.raises(ValueError, match="no CUDA kernels"):
        st.attention(q, k, v, st.dense())
