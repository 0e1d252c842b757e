// SPDX-License-Identifier: MIT
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "semfocus/config.hpp"
#include "semfocus/core/view.hpp"
#include "semfocus/detail/numeric.hpp"
#include "semfocus/detail/xsimd.hpp"

// The SIMD backend's building blocks, written once over the xsimd arch `A` (default: the best
// the translation unit is compiled for). Every reduction runs in a fixed order that depends on
// the shape only, never on the thread that runs it.
namespace semfocus::backend::simd {

template <class T, class A = xsimd::default_arch>
struct kernels {
  using batch = xsimd::batch<T, A>;
  static constexpr index_t width = static_cast<index_t>(batch::size);
  /// Register tile of the GEMM micro-kernel: mr rows x nv vectors of accumulators, chosen so
  /// that mr nv + nv + 1 registers fit (32 vector registers on AVX-512, 16 otherwise).
  static constexpr int nv = 2;
  static constexpr int mr = sizeof(batch) >= 64 ? 12 : 6;

  static constexpr index_t round_up(index_t n, index_t m) noexcept { return (n + m - 1) / m * m; }
  static constexpr index_t padded(index_t n) noexcept { return round_up(n, width); }

  /// \brief C[rows x cols] (+)= A[rows x kd] B[kd x cols] with A(i, p) = a[i ars + p acs],
  /// B(p, j) = b[p ldb + j], C(i, j) = c[i ldc + j]; cols must be a multiple of `width` (B and C
  /// readable and writable that far). Each C entry is one fma chain over p = 0, 1, ..., kd - 1,
  /// so a score computed as (Q K^T)_ij or as (K Q^T)_ji has the same bits.
  /// Cost rows cols kd multiply-adds.
  template <bool Accumulate>
  static void gemm(index_t rows, index_t cols, index_t kd, const T* a, index_t ars, index_t acs,
                   const T* b, index_t ldb, T* c, index_t ldc) noexcept {
    for (index_t j = 0; j < cols; j += nv * width) {
      const bool full = cols - j >= nv * width;
      for (index_t i = 0; i < rows; i += mr) {
        const int m = static_cast<int>(std::min<index_t>(mr, rows - i));
        if (full)
          dispatch_rows<nv, Accumulate>(m, kd, a + i * ars, ars, acs, b + j, ldb, c + i * ldc + j,
                                        ldc);
        else
          dispatch_rows<1, Accumulate>(m, kd, a + i * ars, ars, acs, b + j, ldb, c + i * ldc + j,
                                       ldc);
      }
    }
    if constexpr (nv > 2) static_assert(nv <= 2, "gemm handles a remainder of one vector");
  }

  /// \brief max over x[0, n) (n a multiple of width); -inf when n = 0.
  static T max(const T* x, index_t n) noexcept {
    batch m(-detail::infinity<T>());
    for (index_t j = 0; j < n; j += width) m = xsimd::max(m, batch::load_unaligned(x + j));
    alignas(64) T lanes[width];
    m.store_aligned(lanes);
    T r = lanes[0];
    for (index_t l = 1; l < width; ++l) r = std::max(r, lanes[l]);
    return r;
  }

  /// \brief x[j] = exp(x[j] - m) for j in [0, n) (n a multiple of width); returns the sum of the
  /// new values (lane-wise partial sums, then lanes in order). -inf entries become 0.
  static T exp_sum(T* x, index_t n, T m) noexcept {
    const batch mb(m);
    batch s(T(0));
    for (index_t j = 0; j < n; j += width) {
      const batch e = xsimd::exp(batch::load_unaligned(x + j) - mb);
      e.store_unaligned(x + j);
      s += e;
    }
    return hsum(s);
  }

  /// \brief Sum of the lanes of v, in lane order.
  static T hsum(const batch& v) noexcept {
    alignas(64) T lanes[width];
    v.store_aligned(lanes);
    T r = lanes[0];
    for (index_t l = 1; l < width; ++l) r += lanes[l];
    return r;
  }

  /// \brief x[0, n) *= f (n a multiple of width).
  static void scale(T* x, index_t n, T f) noexcept {
    const batch fb(f);
    for (index_t j = 0; j < n; j += width)
      (batch::load_unaligned(x + j) * fb).store_unaligned(x + j);
  }

  /// \brief sum_c x[c] y[c] over c in [0, n), any n: four lane-wise partial sums (so the fma
  /// latency overlaps) over blocks of 4 width, one more over single vectors, added in a fixed
  /// order, then the lanes in order, then the scalar tail in order.
  static T dot(const T* x, const T* y, index_t n) noexcept {
    batch s0(T(0)), s1(T(0)), s2(T(0)), s3(T(0));
    index_t c = 0;
    for (; c + 4 * width <= n; c += 4 * width) {
      s0 = xsimd::fma(batch::load_unaligned(x + c), batch::load_unaligned(y + c), s0);
      s1 = xsimd::fma(batch::load_unaligned(x + c + width), batch::load_unaligned(y + c + width),
                      s1);
      s2 = xsimd::fma(batch::load_unaligned(x + c + 2 * width),
                      batch::load_unaligned(y + c + 2 * width), s2);
      s3 = xsimd::fma(batch::load_unaligned(x + c + 3 * width),
                      batch::load_unaligned(y + c + 3 * width), s3);
    }
    for (; c + width <= n; c += width)
      s0 = xsimd::fma(batch::load_unaligned(x + c), batch::load_unaligned(y + c), s0);
    T r = hsum((s0 + s1) + (s2 + s3));
    for (; c < n; ++c) r = std::fma(x[c], y[c], r);
    return r;
  }

  /// \brief y[0, n) += f x[0, n), any n.
  static void axpy(T* y, const T* x, index_t n, T f) noexcept {
    const batch fb(f);
    index_t c = 0;
    for (; c + width <= n; c += width)
      xsimd::fma(fb, batch::load_unaligned(x + c), batch::load_unaligned(y + c))
          .store_unaligned(y + c);
    for (; c < n; ++c) y[c] = std::fma(f, x[c], y[c]);
  }

  /// \brief y[0, n) += x[0, n), any n.
  static void add(T* y, const T* x, index_t n) noexcept {
    index_t c = 0;
    for (; c + width <= n; c += width)
      (batch::load_unaligned(y + c) + batch::load_unaligned(x + c)).store_unaligned(y + c);
    for (; c < n; ++c) y[c] += x[c];
  }

  /// \brief One row of the softmax backward, transposed (a key j against n queries i):
  /// p_i = exp(s_i - lse_i) (s = -inf off the kept set), then s_i = p_i and
  /// dp_i = p_i (dp_i - dd_i) f, exactly 0 where p_i = 0. n a multiple of width.
  static void softmax_grad(T* s, T* dp, const T* lse, const T* dd, index_t n, T f) noexcept {
    const batch fb(f);
    for (index_t i = 0; i < n; i += width) {
      const batch p = xsimd::exp(batch::load_unaligned(s + i) - batch::load_unaligned(lse + i));
      p.store_unaligned(s + i);
      const batch g = p * (batch::load_unaligned(dp + i) - batch::load_unaligned(dd + i)) * fb;
      xsimd::select(p != batch(T(0)), g, batch(T(0))).store_unaligned(dp + i);  // unkept: 0
    }
  }

  /// \brief Copies rows [r0, r0 + n) of head (b, h) of `t` into dst (row stride ld >= dim),
  /// zero-filling columns [dim, ld): padded rows for the B operand of gemm.
  /// With zero_nonfinite, rows holding a NaN or an infinity become zero rows (see finite_rows).
  static void pack_rows(const tensor_view<const T>& t, index_t b, index_t h, index_t r0, index_t n,
                        T* dst, index_t ld, bool zero_nonfinite = false) noexcept {
    const index_t dim = t.dim();
    for (index_t r = 0; r < n; ++r) {
      const T* src = t.row(b, h, r0 + r);
      if (zero_nonfinite && !finite(src, dim))
        std::fill(dst + r * ld, dst + r * ld + dim, T(0));
      else
        std::memcpy(dst + r * ld, src, std::size_t(dim) * sizeof(T));
      std::fill(dst + r * ld + dim, dst + (r + 1) * ld, T(0));
    }
  }

  /// \brief Whether x[0, n) are all finite (x - x == 0 fails exactly for NaN and infinities).
  static bool finite(const T* x, index_t n) noexcept {
    batch acc(T(0));
    index_t c = 0;
    for (; c + width <= n; c += width) {
      const batch v = batch::load_unaligned(x + c);
      acc += v - v;
    }
    bool ok = xsimd::all(acc == batch(T(0)));
    for (; c < n; ++c) ok = ok && x[c] - x[c] == T(0);
    return ok;
  }

  /// \brief Whether every row of head (b, h) of t is finite.
  static bool finite_rows(const tensor_view<const T>& t, index_t b, index_t h) noexcept {
    for (index_t r = 0; r < t.seq(); ++r)
      if (!finite(t.row(b, h, r), t.dim())) return false;
    return true;
  }

  /// \brief Transposes rows [r0, r0 + n) of head (b, h) of `t` into a panel of `blk` columns:
  /// dst[c blk + r] = t(r0 + r, c) for c < dim, zero for r in [n, blk).
  static void pack_transposed(const tensor_view<const T>& t, index_t b, index_t h, index_t r0,
                              index_t n, T* dst, index_t blk) noexcept {
    const index_t dim = t.dim();
    for (index_t c = 0; c < dim; ++c) std::fill(dst + c * blk + n, dst + (c + 1) * blk, T(0));
    for (index_t r = 0; r < n; ++r) {
      const T* src = t.row(b, h, r0 + r);
      for (index_t c = 0; c < dim; ++c) dst[c * blk + r] = src[c];
    }
  }

 private:
  template <int M, int NV, bool Accumulate>
  static SEMFOCUS_FORCEINLINE void micro(index_t kd, const T* a, index_t ars, index_t acs,
                                         const T* b, index_t ldb, T* c, index_t ldc) noexcept {
    batch acc[M][NV];
#pragma GCC unroll 16
    for (int r = 0; r < M; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        acc[r][v] = Accumulate ? batch::load_unaligned(c + r * ldc + v * width) : batch(T(0));
    for (index_t p = 0; p < kd; ++p) {
      batch bv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) bv[v] = batch::load_unaligned(b + p * ldb + v * width);
      const T* ap = a + p * acs;
#pragma GCC unroll 16
      for (int r = 0; r < M; ++r) {
        const batch ar(ap[r * ars]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[r][v] = xsimd::fma(ar, bv[v], acc[r][v]);
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < M; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v].store_unaligned(c + r * ldc + v * width);
  }

  template <int NV, bool Accumulate, int M = mr>
  static void dispatch_rows(int m, index_t kd, const T* a, index_t ars, index_t acs, const T* b,
                            index_t ldb, T* c, index_t ldc) noexcept {
    if constexpr (M >= 1) {
      if (m == M) return micro<M, NV, Accumulate>(kd, a, ars, acs, b, ldb, c, ldc);
      return dispatch_rows<NV, Accumulate, M - 1>(m, kd, a, ars, acs, b, ldb, c, ldc);
    }
  }
};

}  // namespace semfocus::backend::simd
