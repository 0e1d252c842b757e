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

/// \brief L x L transposed copy, d[p ld + r] = s[r ls + p] for r, p < L, in 32-byte GNU vectors
/// (8 floats, 4 doubles: two and three rounds of shuffles); L = 1 for other T.
template <class T>
struct transpose_tile {
  static constexpr index_t lanes = 1;
  static void copy(const T* s, index_t, T* d, index_t) noexcept { *d = *s; }
};

template <>
struct transpose_tile<float> {
  static constexpr index_t lanes = 8;
  typedef float vec __attribute__((vector_size(32)));
  static SEMFOCUS_FORCEINLINE void copy(const float* s, index_t ls, float* d, index_t ld) noexcept {
    vec r[8], t[8], u[8];
    for (int i = 0; i < 8; ++i) std::memcpy(&r[i], s + i * ls, sizeof(vec));
    for (int i = 0; i < 8; i += 2) {  // t: 2 x 2 blocks of rows i, i + 1 interleaved
      t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
      t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4)  // u: 4 x 4 blocks
      for (int k = 0; k < 2; ++k) {
        u[i + 2 * k] = __builtin_shufflevector(t[i + k], t[i + k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 2 * k + 1] =
            __builtin_shufflevector(t[i + k], t[i + k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
      }
    for (int p = 0; p < 4; ++p) {  // columns p and p + 4: halves of u[p] and u[p + 4]
      const vec lo = __builtin_shufflevector(u[p], u[p + 4], 0, 1, 2, 3, 8, 9, 10, 11);
      const vec hi = __builtin_shufflevector(u[p], u[p + 4], 4, 5, 6, 7, 12, 13, 14, 15);
      std::memcpy(d + p * ld, &lo, sizeof(vec));
      std::memcpy(d + (p + 4) * ld, &hi, sizeof(vec));
    }
  }
};

template <>
struct transpose_tile<double> {
  static constexpr index_t lanes = 4;
  typedef double vec __attribute__((vector_size(32)));
  static SEMFOCUS_FORCEINLINE void copy(const double* s, index_t ls, double* d,
                                        index_t ld) noexcept {
    vec r[4];
    for (int i = 0; i < 4; ++i) std::memcpy(&r[i], s + i * ls, sizeof(vec));
    const vec t0 = __builtin_shufflevector(r[0], r[1], 0, 4, 2, 6);
    const vec t1 = __builtin_shufflevector(r[0], r[1], 1, 5, 3, 7);
    const vec t2 = __builtin_shufflevector(r[2], r[3], 0, 4, 2, 6);
    const vec t3 = __builtin_shufflevector(r[2], r[3], 1, 5, 3, 7);
    const vec c[4] = {
        __builtin_shufflevector(t0, t2, 0, 1, 4, 5), __builtin_shufflevector(t1, t3, 0, 1, 4, 5),
        __builtin_shufflevector(t0, t2, 2, 3, 6, 7), __builtin_shufflevector(t1, t3, 2, 3, 6, 7)};
    for (int p = 0; p < 4; ++p) std::memcpy(d + p * ld, &c[p], sizeof(vec));
  }
};

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

  /// Columns of one packed B panel (see pack_b_rows).
  static constexpr index_t nr = nv * width;

  /// \brief C[rows x cols] (+)= A[rows x kd] B[kd x cols] with A(i, p) = a[i ars + p acs],
  /// C(i, j) = c[i ldc + j], and B packed in panels of nr columns (pack_b_rows,
  /// pack_b_transposed): B(p, j) = b[(j / nr) lpb + p nr + j % nr], lpb >= kd nr the panel stride.
  /// cols must be a multiple of `width` (C writable that far). Each C entry is one fma chain over
  /// p = 0, 1, ..., kd - 1, so a score computed as (Q K^T)_ij or as (K Q^T)_ji has the same bits,
  /// and splitting kd over calls with Accumulate (C stored and reloaded exactly) does not change
  /// them. The micro-kernel reads B's panel contiguously (one nr-wide row per step, the stream
  /// the prefetcher follows) and broadcasts A. With `bias` (cols entries, or null), each stored
  /// entry is then fl(C(i, j) + bias[j]): the same bits as adding the bias row in a later pass.
  /// Cost rows cols kd multiply-adds.
  template <bool Accumulate>
  static void gemm(index_t rows, index_t cols, index_t kd, const T* a, index_t ars, index_t acs,
                   const T* b, index_t lpb, T* c, index_t ldc, const T* bias = nullptr) noexcept {
    for (index_t j = 0; j < cols; j += nr) {
      const bool full = cols - j >= nr;
      const T* panel = b + j / nr * lpb;
      const T* bj = bias == nullptr ? nullptr : bias + j;
      for (index_t i = 0; i < rows; i += mr) {
        const int m = static_cast<int>(std::min<index_t>(mr, rows - i));
        if (full)
          dispatch_rows<nv, Accumulate>(m, kd, a + i * ars, ars, acs, panel, c + i * ldc + j, ldc,
                                        bj);
        else
          dispatch_rows<1, Accumulate>(m, kd, a + i * ars, ars, acs, panel, c + i * ldc + j, ldc,
                                       bj);
      }
    }
    if constexpr (nv > 2) static_assert(nv <= 2, "gemm handles a remainder of one vector");
  }

  /// \brief Size (in T) of B[kd x cols] packed in panels: round_up(cols, nr) kd.
  static constexpr index_t panels_size(index_t kd, index_t cols) noexcept {
    return round_up(cols, nr) * kd;
  }

  /// \brief Packs B(p, j) = t(b, h, r0 + p, j) for p in [0, n), j < dim, into panels of nr
  /// columns with panel stride lpb = kd nr (kd >= n; columns [dim, round_up(dim, nr)) are zero,
  /// and rows [n, kd) too unless zero_tail is false, for a gemm that reads n rows only): the B
  /// operand "rows of t" of gemm. With zero_nonfinite, rows holding a NaN or an infinity become
  /// zero rows (see finite). O(kd round_up(dim, nr)).
  static void pack_b_rows(const tensor_view<const T>& t, index_t b, index_t h, index_t r0,
                          index_t n, index_t kd, T* dst, bool zero_nonfinite = false,
                          bool zero_tail = true) noexcept {
    const index_t dim = t.dim(), lpb = kd * nr;
    if (dim % nr != 0 || zero_nonfinite) {
      std::fill(dst, dst + panels_size(kd, dim), T(0));
    } else if (zero_tail) {  // every entry of rows [0, n) is written below: zero rows [n, kd)
      for (index_t j = 0; j < dim; j += nr)
        std::fill(dst + j / nr * lpb + n * nr, dst + j / nr * lpb + kd * nr, T(0));
    }
    for (index_t p = 0; p < n; ++p) {
      const T* src = t.row(b, h, r0 + p);
      if (zero_nonfinite && !finite(src, dim)) continue;
      for (index_t j = 0; j < dim; j += nr)
        std::memcpy(dst + j / nr * lpb + p * nr, src + j,
                    std::size_t(std::min(nr, dim - j)) * sizeof(T));
    }
  }

  /// \brief Packs B(p, j) = t(b, h, r0 + j, p) for p < dim, j in [0, n), and zero for j in [n,
  /// blk) (blk >= n; columns past blk of its last panel are left as they are), into panels with
  /// stride lpb = dim nr: the B operand "t^T" of gemm, for scores against the first blk columns.
  /// Whole L x L tiles are transposed in registers (transpose_tile). O(dim round_up(blk, nr)).
  static void pack_b_transposed(const tensor_view<const T>& t, index_t b, index_t h, index_t r0,
                                index_t n, T* dst, index_t blk) noexcept {
    const index_t dim = t.dim(), lpb = dim * nr, ls = t.strides().seq;
    if (const index_t c0 = n % nr, c1 = std::min(nr, blk - (n - c0)); c0 != 0 && c1 > c0) {
      T* panel = dst + n / nr * lpb;  // columns [n, blk) of the panel holding column n
      for (index_t p = 0; p < dim; ++p) std::fill(panel + p * nr + c0, panel + p * nr + c1, T(0));
    }
    std::fill(dst + (n + nr - 1) / nr * lpb, dst + (blk + nr - 1) / nr * lpb, T(0));
    constexpr index_t L = transpose_tile<T>::lanes;  // divides nr: a tile stays in one panel
    static_assert(nr % L == 0);
    const index_t nt = n - n % L, dt = dim - dim % L;  // whole tiles
    for (index_t j = 0; j < nt; j += L) {
      const T* src = t.row(b, h, r0 + j);
      T* col = dst + j / nr * lpb + j % nr;
      for (index_t p = 0; p < dt; p += L) transpose_tile<T>::copy(src + p, ls, col + p * nr, nr);
      for (index_t p = dt; p < dim; ++p)
        for (index_t r = 0; r < L; ++r) col[p * nr + r] = src[r * ls + p];
    }
    for (index_t j = nt; j < n; ++j) {
      const T* src = t.row(b, h, r0 + j);
      T* col = dst + j / nr * lpb + j % nr;
      for (index_t p = 0; p < dim; ++p) col[p * nr] = src[p];
    }
  }

  /// \brief max over x[0, n) (n a multiple of width); -inf when n = 0.
  static T max(const T* x, index_t n) noexcept { return scale_max<false>(const_cast<T*>(x), n, 1); }

  /// \brief x[j] = fl(x[j] f) for j in [0, n) and the max of the new values (n a multiple of
  /// width), in one pass: the same values, and the same max (one lane-wise chain in j order,
  /// then the lanes in order), as scale then max.
  template <bool Scale = true>
  static T scale_max(T* x, index_t n, T f) noexcept {
    const batch fb(f);
    batch m(-detail::infinity<T>());
    for (index_t j = 0; j < n; j += width) {
      batch v = batch::load_unaligned(x + j);
      if constexpr (Scale) {
        v *= fb;
        v.store_unaligned(x + j);
      }
      m = xsimd::max(m, v);
    }
    alignas(64) T lanes[width];
    m.store_aligned(lanes);
    T r = lanes[0];
    for (index_t l = 1; l < width; ++l) r = std::max(r, lanes[l]);
    return r;
  }

  /// \brief exp(x) lane-wise, with x first clamped to [-1000, 1000] (exp gives 0 and +inf there,
  /// as at -inf and +inf) and NaN lanes passed around exp (and returned as they are), so that no
  /// -inf (an unkept score), +inf or NaN reaches exp's float-to-integer conversion: out of range,
  /// it is undefined behaviour (xsimd converts double lanes one by one on AVX2; clang's UBSan
  /// reports it).
  static batch exp_floored(const batch& x) noexcept {
    const auto nan = xsimd::isnan(x);
    const batch clamped = xsimd::min(xsimd::max(x, batch(T(-1000))), batch(T(1000)));
    return xsimd::select(nan, x, xsimd::exp(xsimd::select(nan, batch(T(0)), clamped)));
  }

  /// \brief x[j] = exp(x[j] - m) for j in [0, n) (n a multiple of width); returns the sum of the
  /// new values (lane-wise partial sums, then lanes in order). -inf entries become 0.
  static T exp_sum(T* x, index_t n, T m) noexcept {
    const batch mb(m);
    batch s(T(0));
    for (index_t j = 0; j < n; j += width) {
      const batch e = exp_floored(batch::load_unaligned(x + j) - mb);
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
      const batch p = exp_floored(batch::load_unaligned(s + i) - batch::load_unaligned(lse + i));
      p.store_unaligned(s + i);
      const batch g = p * (batch::load_unaligned(dp + i) - batch::load_unaligned(dd + i)) * fb;
      xsimd::select(p != batch(T(0)), g, batch(T(0))).store_unaligned(dp + i);  // unkept: 0
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

 private:
  template <int M, int NV, bool Accumulate>
  static SEMFOCUS_FORCEINLINE void micro(index_t kd, const T* a, index_t ars, index_t acs,
                                         const T* b, T* c, index_t ldc, const T* bias) noexcept {
    batch acc[M][NV];
#pragma GCC unroll 16
    for (int r = 0; r < M; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v)
        acc[r][v] = Accumulate ? batch::load_unaligned(c + r * ldc + v * width) : batch(T(0));
#pragma GCC unroll 4  // the loop's own instructions are a tenth of the kernel's (callgrind)
    for (index_t p = 0; p < kd; ++p) {
      batch bv[NV];
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) bv[v] = batch::load_unaligned(b + p * nr + v * width);
      const T* ap = a + p * acs;
#pragma GCC unroll 16
      for (int r = 0; r < M; ++r) {
        const batch ar(ap[r * ars]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[r][v] = xsimd::fma(ar, bv[v], acc[r][v]);
      }
    }
    if (bias != nullptr) {
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) {
        const batch bv = batch::load_unaligned(bias + v * width);
#pragma GCC unroll 16
        for (int r = 0; r < M; ++r) acc[r][v] += bv;
      }
    }
#pragma GCC unroll 16
    for (int r = 0; r < M; ++r)
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) acc[r][v].store_unaligned(c + r * ldc + v * width);
  }

  template <int NV, bool Accumulate, int M = mr>
  static void dispatch_rows(int m, index_t kd, const T* a, index_t ars, index_t acs, const T* b,
                            T* c, index_t ldc, const T* bias) noexcept {
    if constexpr (M >= 1) {
      if (m == M) return micro<M, NV, Accumulate>(kd, a, ars, acs, b, c, ldc, bias);
      return dispatch_rows<NV, Accumulate, M - 1>(m, kd, a, ars, acs, b, c, ldc, bias);
    }
  }
};

}  // namespace semfocus::backend::simd
