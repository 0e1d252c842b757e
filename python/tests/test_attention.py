# SPDX-License-Identifier: MIT
"""semfocus_torch.attention against a plain PyTorch formulation written here (scores, the policy's
kept set as a bool mask, masked softmax, P V; its gradients by autograd with the kept set held
constant), plus gradcheck, opcheck, torch.compile, layouts, empty rows, determinism and errors."""
import math

import pytest
import torch

import semfocus_torch as st

torch.manual_seed(0)


# --- the reference formulation -------------------------------------------------------------------

def positions(n_q, n_k):
    """Key position of each query row (bottom-right alignment, as the C++ head_slice)."""
    return torch.arange(n_q).unsqueeze(1) + (n_k - n_q)


def fixed_keep(policy, n_q, n_k):
    """[n_q, n_k] bool: the keys an input-agnostic policy keeps (the C++ headers' definitions)."""
    p = positions(n_q, n_k)
    j = torch.arange(n_k).unsqueeze(0)
    if isinstance(policy, st.dense):
        return torch.ones(n_q, n_k, dtype=torch.bool)
    if isinstance(policy, st.causal):
        return j <= p
    if isinstance(policy, st.banded):
        start = (p - (policy.k - 1) // 2).clamp(0, n_k - policy.k)
        return (j >= start) & (j < start + policy.k)
    if isinstance(policy, st.block_local):
        return (p >= 0) & (torch.div(p, policy.k, rounding_mode="floor") == j // policy.k)
    if isinstance(policy, st.strided):
        diff = p - j
        return (diff % policy.stride == 0) | (diff.abs() <= policy.local)
    if isinstance(policy, st.with_global):
        g = policy.g
        keep = torch.ones(n_q, n_k, dtype=torch.bool)
        keep[: n_q - g, : n_k - g] = fixed_keep(policy.inner, n_q - g, n_k - g)
        return keep
    raise AssertionError(policy)


def keep_mask(policy, s):
    """[B, H, n_q, n_k] bool kept set of `policy` on the scaled scores s (detached)."""
    s = s.detach()
    n_q, n_k = s.shape[-2:]
    if isinstance(policy, st.explicit_mask):
        return policy.mask.expand_as(s)
    if isinstance(policy, (st.top_k, st.bottom_k)):
        idx = s.topk(policy.k, dim=-1, largest=isinstance(policy, st.top_k)).indices
        return torch.zeros_like(s, dtype=torch.bool).scatter(-1, idx, True)
    if isinstance(policy, st.threshold):
        return s >= s.amax(-1, keepdim=True) - policy.tau
    if isinstance(policy, st.absolute_threshold):
        return s >= policy.tau
    return fixed_keep(policy, n_q, n_k).expand_as(s)


def reference(q, k, v, policy, scale=None, keep=None):
    scale = 1 / math.sqrt(q.size(-1)) if scale is None else scale
    s = (q @ k.transpose(-1, -2)) * scale
    keep = keep_mask(policy, s) if keep is None else keep
    p = torch.softmax(s.masked_fill(~keep, -math.inf), dim=-1)
    return torch.where(keep.any(-1, keepdim=True), p, torch.zeros_like(p)) @ v


def random_k_keep(policy, b, h, n_q, n_k):
    """The kept set of random_k, read back through the operator: with q = 0 every kept score is
    equal, so with V = the identity row i of the output is 1/k on its kept keys, 0 elsewhere."""
    q = torch.zeros(b, h, n_q, 4, dtype=torch.float64)
    k = torch.randn(b, h, n_k, 4, dtype=torch.float64)
    eye = torch.eye(n_k, dtype=torch.float64).expand(b, h, n_k, n_k)
    out = st.attention(q, k, eye, policy)
    assert torch.allclose(out[out > 0], torch.tensor(1.0 / policy.k, dtype=torch.float64))
    return out > 0


def inputs(b=2, h=3, n_q=19, n_k=23, d=8, d_v=6, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, dim, generator=g, dtype=torch.float64).to(dtype)
            for n, dim in ((n_q, d), (n_k, d), (n_k, d_v))]


def margin(s, policy):
    """Smallest distance of a score from the policy's selection boundary (inf if none)."""
    s = s.detach()
    if isinstance(policy, (st.top_k, st.bottom_k)):
        v = s.sort(dim=-1, descending=isinstance(policy, st.top_k)).values
        return (v[..., policy.k - 1] - v[..., policy.k]).abs().min().item()
    if isinstance(policy, st.threshold):
        return (s - (s.amax(-1, keepdim=True) - policy.tau)).abs().min().item()
    if isinstance(policy, st.absolute_threshold):
        return (s - policy.tau).abs().min().item()
    return math.inf


MASK = torch.rand(19, 23, generator=torch.Generator().manual_seed(3)) > 0.4
POLICIES = [st.dense(), st.causal(), st.banded(5), st.block_local(4), st.strided(3, 1),
            st.with_global(st.banded(3), 2), st.with_global(st.causal(), 1),
            st.explicit_mask(MASK), st.random_k(5, seed=11), st.top_k(4), st.bottom_k(3),
            st.threshold(0.7), st.absolute_threshold(0.3)]


def kept_set(policy, q, k):
    if isinstance(policy, st.random_k):
        return random_k_keep(policy, q.size(0), q.size(1), q.size(2), k.size(2))
    return None


@pytest.mark.parametrize("policy", POLICIES, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_forward_and_gradients_match_reference(policy, dtype):
    q, k, v = inputs(dtype=dtype)
    s = (q.double() @ k.double().transpose(-1, -2)) / math.sqrt(q.size(-1))
    assert margin(s, policy) > 1e-4, "inputs too close to the selection boundary"
    keep = kept_set(policy, q, k)
    d_out = torch.randn(q.shape[:3] + (v.size(-1),), dtype=dtype)
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    out = st.attention(*leaves, policy)
    grads = torch.autograd.grad(out, leaves, d_out)
    ref_leaves = [x.double().clone().requires_grad_() for x in (q, k, v)]
    ref = reference(*ref_leaves, policy, keep=keep)
    ref_grads = torch.autograd.grad(ref, ref_leaves, d_out.double())
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    assert out.dtype == dtype and out.shape == ref.shape
    torch.testing.assert_close(out.double(), ref, **tol)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got.double(), want, **tol)


@pytest.mark.parametrize("policy", [st.dense(), st.causal(), st.banded(3), st.top_k(3),
                                    st.threshold(0.5), st.explicit_mask(MASK[:7, :9]),
                                    st.with_global(st.strided(2), 1)], ids=repr)
def test_gradcheck(policy):
    q, k, v = (x.requires_grad_() for x in inputs(b=1, h=2, n_q=7, n_k=9, d=4, d_v=3, seed=17))
    s = (q @ k.transpose(-1, -2)) / 2
    assert margin(s, policy) > 1e-3
    assert torch.autograd.gradcheck(lambda a, b, c: st.attention(a, b, c, policy), (q, k, v))


def test_scale_argument():
    q, k, v = inputs()
    torch.testing.assert_close(st.attention(q, k, v, st.top_k(5), scale=0.3),
                               reference(q, k, v, st.top_k(5), scale=0.3))


def test_opcheck():
    """torch.library's own checks of the schema, the fake implementation and autograd."""
    q, k, v = (x.requires_grad_() for x in inputs(b=1, h=2, n_q=5, n_k=6, d=4, d_v=3))
    for policy in (st.dense(), st.top_k(2)):
        name, ints, floats, mask = policy.spec()
        torch.library.opcheck(torch.ops.semfocus.forward.default,
                              (q, k, v, name, list(ints), list(floats), mask, None))


def compiled_matches_eager(q, k, v):
    """torch.compile(fullgraph=True) of a function calling the operator gives its eager value
    and gradients; returns the eager gradients."""
    def f(q, k, v):
        return (st.attention(q, k, v, st.top_k(4)) * 2).sum()

    compiled = torch.compile(f, fullgraph=True)
    torch.testing.assert_close(compiled(q, k, v), f(q, k, v))
    want = torch.autograd.grad(f(q, k, v), (q, k, v))
    got = torch.autograd.grad(compiled(q, k, v), (q, k, v))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    return want


def test_torch_compile_fullgraph():
    compiled_matches_eager(*(x.requires_grad_()
                             for x in inputs(b=1, h=2, n_q=16, n_k=16, d=8, d_v=8)))


def test_bshd_layout_through_strides():
    """[batch, seq, heads, dim] storage passes as x.transpose(1, 2); results and gradients keep
    that layout and equal the contiguous [batch, heads, seq, dim] call."""
    q, k, v = inputs(n_q=23)
    bshd = [x.transpose(1, 2).contiguous().requires_grad_() for x in (q, k, v)]
    out = st.attention(*(x.transpose(1, 2) for x in bshd), st.top_k(5))
    assert out.transpose(1, 2).is_contiguous()
    torch.testing.assert_close(out, st.attention(q, k, v, st.top_k(5)), rtol=0, atol=0)
    out.sum().backward()
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    st.attention(*leaves, st.top_k(5)).sum().backward()
    for a, b in zip(bshd, leaves):
        torch.testing.assert_close(a.grad.transpose(1, 2), b.grad, rtol=0, atol=0)


def test_strided_last_axis_is_copied():
    q, k, v = inputs(d=16)
    torch.testing.assert_close(st.attention(q[..., ::2], k[..., ::2], v, st.dense()),
                               reference(q[..., ::2], k[..., ::2], v, st.dense()))


def test_empty_rows_give_zeros_and_no_nan():
    q, k, v = (x.requires_grad_() for x in inputs())
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.size(-1))
    tau = s.amax(-1).median().item() + 1e-3  # about half of the rows keep nothing
    out = st.attention(q, k, v, st.absolute_threshold(tau))
    empty = ~(s >= tau).any(-1)
    assert empty.any() and (~empty).any()
    assert not out.isnan().any() and (out[empty] == 0).all()
    out.sum().backward()
    for x in (q, k, v):
        assert not x.grad.isnan().any()
    assert (q.grad[empty] == 0).all()


def test_deterministic_over_runs_and_threads():
    q, k, v = inputs(b=1, h=2, n_q=200, n_k=190, d=32, d_v=32, dtype=torch.float32)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 2):
            torch.set_num_threads(threads)
            leaves = [x.clone().requires_grad_() for x in (q, k, v)]
            out = st.attention(*leaves, st.top_k(16))
            out.backward(torch.ones_like(out))
            results.append([out.detach()] + [x.grad for x in leaves])
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_errors():
    q, k, v = inputs()
    with pytest.raises(ValueError, match="k must be in"):
        st.attention(q, k, v, st.top_k(100))
    with pytest.raises(ValueError, match=r"q must be 4-D"):
        st.attention(q[0], k, v, st.dense())
    with pytest.raises(ValueError, match="float32 or float64"):
        st.attention(q.to(torch.int32), k, v, st.dense())
    with pytest.raises(ValueError, match="one dtype"):
        st.attention(q, k.float(), v, st.dense())
    with pytest.raises(ValueError):  # the library's shape check: k's d differs from q's
        st.attention(q, k[..., :4], v, st.dense())
    with pytest.raises(ValueError, match="mask must have"):
        st.attention(q, k, v, st.explicit_mask(MASK[:5]))
    with pytest.raises(ValueError, match="banded"):
        st.attention(q, k, v, st.banded(0))
    with pytest.raises(TypeError, match="policy must be"):
        st.attention(q, k, v, "top_k")
    with pytest.raises(TypeError, match="must be an int"):
        st.top_k(2.5)
    with pytest.raises(TypeError, match="fixed mask"):
        st.with_global(st.top_k(2), 1)
