# SPDX-License-Identifier: MIT
"""The attention policies: small immutable values, one per C++ policy of semfocus (same names,
same parameters, same validation: a rejected value raises ValueError when the operator runs).

Fixed (input-agnostic) masks, usable inside ``with_global``:
    dense(), causal(), banded(k), block_local(k), strided(stride, local=0), explicit_mask(mask)
Other policies:
    with_global(inner, g), random_k(k, seed), top_k(k), bottom_k(k), threshold(tau),
    absolute_threshold(tau)
The semantics (which keys a row keeps, ties, empty rows) are those of the C++ headers under
include/semfocus/policy/ and of the README's policy table.
"""
from dataclasses import dataclass, fields
from typing import Optional, Tuple

import torch

__all__ = ["dense", "causal", "banded", "block_local", "strided", "explicit_mask", "with_global",
           "random_k", "top_k", "bottom_k", "threshold", "absolute_threshold", "Policy"]

Spec = Tuple[str, Tuple[int, ...], Tuple[float, ...], Optional[torch.Tensor]]


def _int(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"semfocus_torch: {name} must be an int, got {type(value).__name__}")
    return value


def _float(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"semfocus_torch: {name} must be a real number, got "
                        f"{type(value).__name__}")
    return float(value)


class Policy:
    """Base of the policies: ``spec()`` gives what crosses into C++ (name, ints, floats, mask).
    For a dataclass policy it is derived from the fields: the class name (the C++ name), the int
    fields and the float fields in declaration order, each checked against its annotation."""

    fixed_mask = False

    def __post_init__(self):
        for f in fields(self):
            (_int if f.type is int else _float)(f"{type(self).__name__}.{f.name}",
                                                getattr(self, f.name))

    def spec(self) -> Spec:
        values = [(f.type, getattr(self, f.name)) for f in fields(self)]
        return (type(self).__name__, tuple(v for t, v in values if t is int),
                tuple(float(v) for t, v in values if t is float), None)


@dataclass(frozen=True)
class dense(Policy):
    """Every key: softmax attention."""
    fixed_mask = True


@dataclass(frozen=True)
class causal(Policy):
    """Keys j <= p, with p = i + n_k - n_q the row's position (bottom-right aligned, as
    FlashAttention); the first n_q - n_k rows are empty when n_q > n_k."""
    fixed_mask = True


@dataclass(frozen=True)
class banded(Policy):
    """k consecutive keys around the row's position p: [p - (k - 1) // 2, ...], shifted (not
    truncated) at the sequence's edges. Requires 1 <= k <= n_k."""
    k: int
    fixed_mask = True


@dataclass(frozen=True)
class block_local(Policy):
    """The keys of the row's own block of k positions (j // k == p // k). Requires k >= 1."""
    k: int
    fixed_mask = True


@dataclass(frozen=True)
class strided(Policy):
    """Keys with (p - j) % stride == 0, plus those with |p - j| <= local (Sparse Transformer,
    non-causal form). Requires stride >= 1, local >= 0."""
    stride: int
    local: int = 0
    fixed_mask = True


class explicit_mask(Policy):
    """A bool mask, True = kept: [n_q, n_k], [b, n_q, n_k] or [b, h, n_q, n_k], where b is 1 or
    the batch and h 1 or the heads (a size-1 axis broadcasts, as SDPA's attn_mask). Held by
    reference; it must be on q's device when the policy is used."""
    fixed_mask = True

    def __init__(self, mask: torch.Tensor):
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
            raise TypeError("semfocus_torch: explicit_mask takes a bool tensor, got "
                            f"{getattr(mask, 'dtype', type(mask).__name__)}")
        if not 2 <= mask.dim() <= 4:
            raise ValueError("semfocus_torch: explicit_mask's mask must be 2-D to 4-D "
                             f"([1 or batch, 1 or heads,] n_q, n_k), got {mask.dim()}-D")
        while mask.dim() < 4:
            mask = mask.unsqueeze(0)
        if mask.stride(3) != 1 and mask.size(3) > 1:
            mask = mask.contiguous()
        self.mask = mask

    def spec(self):
        return "explicit_mask", (), (), self.mask

    def __repr__(self):
        return f"explicit_mask(mask of shape {tuple(self.mask.shape)})"


@dataclass(frozen=True)
class with_global(Policy):
    """`inner` (a fixed mask) plus g global tokens at the end of the sequence: the last g rows
    keep every key, every row keeps the last g keys, and the other (n_q - g) x (n_k - g) block
    follows `inner` on that block's own extents. Requires 0 <= g <= min(n_q, n_k)."""
    inner: Policy
    g: int

    def __post_init__(self):
        if not isinstance(self.inner, Policy) or not self.inner.fixed_mask:
            raise TypeError("semfocus_torch: with_global's inner must be a fixed mask (dense, "
                            f"causal, banded, block_local, strided, explicit_mask), got "
                            f"{self.inner!r}")
        _int("with_global.g", self.g)

    def spec(self):
        name, ints, floats, mask = self.inner.spec()
        return "with_global:" + name, (self.g,) + ints, floats, mask


@dataclass(frozen=True)
class random_k(Policy):
    """Exactly k distinct keys per row, a pseudo-random subset fixed by (seed, batch, head, row):
    input-agnostic and reproducible. Requires 1 <= k <= n_k."""
    k: int
    seed: int = 0

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.seed < 2 ** 63:
            raise ValueError(f"semfocus_torch: random_k.seed must be in [0, 2^63), got {self.seed}")


@dataclass(frozen=True)
class top_k(Policy):
    """The k largest scores of each row (ties: lower key index first; NaN never kept)."""
    k: int


@dataclass(frozen=True)
class bottom_k(Policy):
    """The k smallest scores of each row (ties: lower key index first; NaN never kept)."""
    k: int


@dataclass(frozen=True)
class threshold(Policy):
    """Scores within tau of the row's maximum: s_ij >= max_j s_ij - tau (scaled scores; never
    empty unless the row is all NaN). Requires a finite tau >= 0."""
    tau: float


@dataclass(frozen=True)
class absolute_threshold(Policy):
    """Scores s_ij >= tau (scaled scores); a row may keep nothing (output 0, gradients 0).
    Requires a finite tau."""
    tau: float
