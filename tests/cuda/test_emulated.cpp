// SPDX-License-Identifier: MIT
// The tensor-core kernel bodies (backend/cuda/tc/) run on the host by the emulation of
// tests/cuda/emulator.hpp, against the reference backend: every policy, __half and
// __nv_bfloat16 formats, odd shapes, both tile sizes, several blocks striding over the tiles.
// Built with the host compiler on every machine (no CUDA needed); only the matrix instruction
// itself is emulated, from the documented fragment layouts.
#include <doctest/doctest.h>

#include <semfocus/backend/cuda/tc/backward.hpp>
#include <semfocus/backend/cuda/tc/forward.hpp>
#include <semfocus/semfocus.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cuda/emulator.hpp"
#include "support/custom_policy.hpp"
#include "support/tensors.hpp"

namespace {

namespace sf = semfocus;
namespace tc = semfocus::backend::cuda::tc;
namespace emu = semfocus::test::emu;
using sf::index_t;

/// 16-bit patterns of a tensor whose values are representable in Fmt.
template <class Fmt>
std::vector<std::uint16_t> bits_of(const sf::test::tensor<float>& t) {
  std::vector<std::uint16_t> r(t.data.size());
  for (std::size_t x = 0; x < r.size(); ++x) r[x] = tc::from_float<Fmt>(t.data[x]);
  return r;
}
template <class Fmt>
std::vector<double> values_of(const std::vector<std::uint16_t>& b) {
  std::vector<double> r(b.size());
  for (std::size_t x = 0; x < r.size(); ++x) r[x] = tc::to_float<Fmt>(b[x]);
  return r;
}

/// A problem whose entries are representable in Fmt; with `tied`, Q and K hold multiples of 1/2
/// in [-1, 1], so that scores are exact in float (with a power-of-two scale) and rows have many
/// equal scores.
template <class Fmt>
sf::test::problem<float> make_problem(const sf::attention_shape& s, unsigned seed, bool tied) {
  sf::test::problem<float> pr(s, seed);
  for (auto* t : {&pr.q, &pr.k, &pr.v, &pr.d_out})
    for (float& x : t->data) {
      if (tied && (t == &pr.q || t == &pr.k)) x = std::round(std::clamp(x, -1.f, 1.f) * 2) / 2;
      x = tc::to_float<Fmt>(tc::from_float<Fmt>(x));
    }
  return pr;
}

/// An input tensor's bits in storage whose rows are `pad` elements longer than its dim (the
/// padding NaN in both formats, so that reading it would show), and a view over them.
struct laid_out {
  std::vector<std::uint16_t> storage;
  sf::tensor_view<const std::uint16_t> view;
  laid_out(const std::vector<std::uint16_t>& bits, const sf::tensor_shape& t, index_t pad) {
    const index_t row = t.dim + pad;
    storage.assign(std::size_t(t.batch * t.heads * t.seq * row), 0x7fff);
    for (index_t r = 0; r < t.batch * t.heads * t.seq; ++r)
      std::copy_n(bits.begin() + r * t.dim, t.dim, storage.begin() + r * row);
    view = {storage.data(), t, sf::tensor_strides{t.heads * t.seq * row, t.seq * row, row}};
  }
};

/// One forward + backward through the kernel bodies, emulated, as the device driver runs them;
/// the inputs' rows padded by `pad` elements.
template <class Policy>
struct emulated_result {
  std::vector<double> out, dq, dk, dv;
  std::vector<float> lse;
  std::vector<sf::row_statistic_t<Policy, float>> stats;
};

template <class Fmt, class Cfg, class Policy>
emulated_result<Policy> run_emulated(const Policy& p, const sf::test::problem<float>& pr,
                                     float scale, index_t grid, index_t pad = 0) {
  using Stat = sf::row_statistic_t<Policy, float>;
  const sf::attention_shape& s = pr.shape;
  const auto q = bits_of<Fmt>(pr.q), k = bits_of<Fmt>(pr.k), v = bits_of<Fmt>(pr.v),
             d_out = bits_of<Fmt>(pr.d_out);
  std::vector<std::uint16_t> out(std::size_t(s.out().size())), dq(q.size()), dk(k.size()),
      dv(v.size());
  emulated_result<Policy> r;
  r.lse.assign(std::size_t(s.rows()), NAN);
  r.stats.resize(std::size_t(s.rows()));
  std::vector<float> row_dot(std::size_t(s.rows()), NAN);
  std::vector<float> scores(std::size_t(grid * Cfg::rows * s.n_k), NAN);
  tc::tc_args<Stat> a;
  const laid_out q_in(q, s.q(), pad), k_in(k, s.k(), pad), v_in(v, s.v(), pad),
      d_out_in(d_out, s.out(), pad);
  a.q = q_in.view;
  a.k = k_in.view;
  a.v = v_in.view;
  a.o = {out.data(), s.out()};
  a.d_out = d_out_in.view;
  a.out = {out.data(), s.out()};
  a.dq = {dq.data(), s.q()};
  a.dk = {dk.data(), s.k()};
  a.dv = {dv.data(), s.v()};
  a.shape = s;
  a.scale = scale;
  a.lse = r.lse.data();
  a.stats = r.stats.data();
  a.row_dot = row_dot.data();
  a.scores = scores.data();
  if constexpr (sf::row_policy<Policy, float>)
    emu::launch(grid, Cfg::threads, tc::stats_smem_bytes<Cfg>(),
                [&](emu::context& c) { tc::stats_body<Fmt, Cfg>(c, p, a); });
  emu::launch(grid, Cfg::threads, tc::forward_smem_bytes<Cfg>(),
              [&](emu::context& c) { tc::forward_body<Fmt, Cfg>(c, p, a); });
  emu::launch(grid, Cfg::threads, 0, [&](emu::context& c) { tc::row_dot_body<Fmt>(c, a); });
  emu::launch(grid, Cfg::threads, tc::dq_smem_bytes<Cfg>(),
              [&](emu::context& c) { tc::dq_body<Fmt, Cfg>(c, p, a); });
  emu::launch(grid, Cfg::threads, tc::dkdv_smem_bytes<Cfg, Stat>(),
              [&](emu::context& c) { tc::dkdv_body<Fmt, Cfg>(c, p, a); });
  r.out = values_of<Fmt>(out);
  r.dq = values_of<Fmt>(dq);
  r.dk = values_of<Fmt>(dk);
  r.dv = values_of<Fmt>(dv);
  return r;
}

/// max |a - b| / max(max |b|, 1e-3); +inf on a NaN or an infinity. The floor keeps gradients
/// that vanish in exact arithmetic (top_k(1): P = 1, dS = 0) from dividing rounding by zero.
double rel_diff(const std::vector<double>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double diff = 0, norm = 1e-3;
  for (std::size_t x = 0; x < a.size(); ++x) {
    if (!std::isfinite(a[x]) || !std::isfinite(b[x])) return INFINITY;
    diff = std::max(diff, std::abs(a[x] - double(b[x])));
    norm = std::max(norm, std::abs(double(b[x])));
  }
  return diff / norm;
}

template <class T, bool L>
std::pair<double, index_t> stat_key(const sf::rank_cut<T, L>& c) {
  return {c.value, c.last};
}
template <class T>
std::pair<double, index_t> stat_key(const sf::score_floor<T>& c) {
  return {c.floor, 0};
}
template <class T>
std::pair<double, index_t> stat_key(const user::mean_floor<T>& c) {
  return {c.mean, 0};
}

/// Normwise tolerance of results rounded to Fmt (P and dS are rounded to Fmt as mma operands).
template <class Fmt>
constexpr double tolerance = std::is_same_v<Fmt, tc::bf16> ? 3e-2 : 4e-3;

template <class Fmt, class Cfg, class Policy>
void check_policy(const Policy& p, const sf::attention_shape& s, bool tied, index_t grid = 3,
                  index_t pad = 0) {
  CAPTURE(s);
  CAPTURE(tied);
  CAPTURE(pad);
  CAPTURE(Fmt::name);
  CAPTURE(Cfg::head);
  CAPTURE(Cfg::keys);
  const auto pr = make_problem<Fmt>(s, unsigned(s.n_q * 7 + s.n_k), tied);
  const double scale = 0.25;  // a power of two: exact scores on tied inputs
  const auto ref = sf::test::run_reference(p, pr, sf::attention_options{scale});
  const auto emu_r = run_emulated<Fmt, Cfg>(p, pr, float(scale), grid, pad);
  std::size_t lse_bad = 0, stat_bad = 0;
  for (std::size_t r = 0; r < emu_r.lse.size(); ++r) {
    const double a = emu_r.lse[r], b = ref.record.lse[r];
    lse_bad += std::isinf(a) || std::isinf(b) ? a != b : std::abs(a - b) > 1e-3 * (1 + std::abs(b));
    if constexpr (sf::row_policy<Policy, float>)
      stat_bad += stat_key(emu_r.stats[r]) != stat_key(ref.record.stats[r]);
  }
  CHECK(lse_bad == 0);
  if (tied) CHECK(stat_bad == 0);  // exact scores: the same selections, bit for bit
  CHECK(rel_diff(emu_r.out, ref.out.data) <= tolerance<Fmt>);
  CHECK(rel_diff(emu_r.dq, ref.dq.data) <= tolerance<Fmt>);
  CHECK(rel_diff(emu_r.dk, ref.dk.data) <= tolerance<Fmt>);
  CHECK(rel_diff(emu_r.dv, ref.dv.data) <= tolerance<Fmt>);
}

template <class Fmt, class Cfg>
void check_all_policies(const sf::attention_shape& s) {
  check_policy<Fmt, Cfg>(sf::dense{}, s, false);
  check_policy<Fmt, Cfg>(sf::causal{}, s, true);
  check_policy<Fmt, Cfg>(sf::banded(5), s, true);
  check_policy<Fmt, Cfg>(sf::block_local(4), s, true);
  check_policy<Fmt, Cfg>(sf::global_tokens(sf::banded(3), 2), s, true);
  check_policy<Fmt, Cfg>(sf::top_k(5), s, true);
  check_policy<Fmt, Cfg>(sf::top_k(1), s, true);
  check_policy<Fmt, Cfg>(sf::bottom_k(3), s, true);
  check_policy<Fmt, Cfg>(sf::threshold(0.25), s, true);
  check_policy<Fmt, Cfg>(sf::absolute_threshold(0.6), s, true);  // some rows keep nothing
  check_policy<Fmt, Cfg>(user::same_parity{}, s, true);
  check_policy<Fmt, Cfg>(user::above_mean{}, s, true);
}

using small = tc::tiles<64, 64>;   // head <= 64, key tiles of 64
using large = tc::tiles<128, 32>;  // head <= 128, key tiles of 32

const sf::attention_shape wide{2, 1, 37, 53, 24, 40};  // n_q < n_k, one query tile
const sf::attention_shape tall{1, 2, 70, 45, 20, 16};  // n_q > n_k, two query tiles

TEST_CASE("emulated tensor cores: f16, every policy, both tile sizes") {
  check_all_policies<tc::f16, small>(wide);
  check_all_policies<tc::f16, large>(tall);
}

TEST_CASE("emulated tensor cores: bf16, every policy, both tile sizes") {
  check_all_policies<tc::bf16, small>(tall);
  check_all_policies<tc::bf16, large>(wide);
}

TEST_CASE("emulated tensor cores: full head dimensions, one block striding over every tile") {
  check_policy<tc::bf16, large>(sf::top_k(9), {1, 1, 40, 97, 128, 100}, true, 1);
  check_policy<tc::f16, small>(sf::dense{}, {1, 2, 65, 66, 64, 64}, false, 1);
}

TEST_CASE("emulated tensor cores: 16-byte row loads with a partial last chunk, strided rows") {
  // d = 20, d_v = 12 in rows of 24 and 16: 16-byte loads, the last chunk partial. Rows of 21
  // and 13 (pad 1): not aligned, one element per load. The wide shape's dims (24, 40) take the
  // aligned path whole, the tall shape's d = 20 the unaligned one.
  const sf::attention_shape s{2, 1, 37, 53, 20, 12};
  for (const index_t pad : {4, 1}) {
    check_policy<tc::f16, small>(sf::top_k(5), s, true, 2, pad);
    check_policy<tc::bf16, large>(sf::banded(5), s, true, 2, pad);
    check_policy<tc::f16, large>(sf::dense{}, s, false, 2, pad);
  }
  const std::vector<std::uint16_t> bits(2 * 3 * 8);
  CHECK(tc::rows_aligned(laid_out(bits, {2, 3, 1, 8}, 0).view));
  CHECK(tc::rows_aligned(laid_out(bits, {2, 3, 1, 4}, 4).view));
  CHECK(!tc::rows_aligned(laid_out(bits, {2, 3, 1, 4}, 1).view));
  CHECK(!tc::rows_aligned(laid_out(bits, {2, 3, 2, 4}, 0).view));
}

}  // namespace

namespace {

/// warp_select_rank and warp_row_max on one emulated warp against detail::select_rank and
/// threshold's own loop, for row lengths around the warp width and beyond, k from 1 to n, rows
/// with many ties, NaN, infinities and signed zeros.
template <bool Largest>
void check_warp_selection(unsigned seed) {
  std::mt19937 gen(seed);
  const float specials[] = {NAN, INFINITY, -INFINITY, 0.f, -0.f, 1.f, -1.f};
  for (const index_t n : {1, 2, 31, 32, 33, 64, 257, 1000}) {
    std::vector<float> row(static_cast<std::size_t>(n));
    for (int round = 0; round < 3; ++round) {
      for (float& x : row) {
        const unsigned u = gen() % 16;
        x = u < 3 ? specials[gen() % 7] : float(int(gen() % 9) - 4) / 2;  // heavy ties
        if (round == 2 && u >= 3) x = std::ldexp(float(gen() % 1000), -7);
      }
      for (const index_t k : {index_t(1), index_t(3), n / 2 + 1, n}) {
        CAPTURE(n);
        CAPTURE(k);
        CAPTURE(round);
        const auto want = sf::detail::select_rank<Largest>(row.data(), n, k);
        sf::detail::rank_result<float> got{};
        emu::launch(1, 32, 256 * sizeof(std::uint32_t), [&](emu::context& c) {
          auto* hist = reinterpret_cast<std::uint32_t*>(c.smem());
          const auto r = tc::warp_select_rank<Largest>(c, row.data(), n, k, hist);
          if (c.thread() == 0) got = r;
        });
        CHECK(got.last == want.last);
        CHECK(std::memcmp(&got.value, &want.value, sizeof(float)) == 0);
      }
      const auto floor =
          sf::threshold(0.5).row_statistic(sf::head_slice{0, 0, 1, n}, 0, row.data());
      float got_max = 0;
      emu::launch(1, 32, 0, [&](emu::context& c) {
        const float m = tc::warp_row_max(c, row.data(), n);
        if (c.thread() == 0) got_max = m;
      });
      CHECK(sf::threshold(0.5).floor_of(got_max).floor == floor.floor);
    }
  }
}

TEST_CASE("emulated warp selections equal the reference's: top_k, bottom_k, threshold") {
  check_warp_selection<true>(7);
  check_warp_selection<false>(8);
}

TEST_CASE("16-bit conversions: every pattern round-trips, floats round to nearest even") {
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const auto b = std::uint16_t(h);
    const float f16 = tc::to_float<tc::f16>(b), b16 = tc::to_float<tc::bf16>(b);
    if (!std::isnan(f16)) CHECK(tc::from_float<tc::f16>(f16) == b);
    if (!std::isnan(b16)) CHECK(tc::from_float<tc::bf16>(b16) == b);
  }
  // Midpoints between neighbours round to the even one; just above rounds up.
  CHECK(tc::from_float<tc::f16>(1.f + 0x1p-11f) == tc::from_float<tc::f16>(1.f));
  CHECK(tc::from_float<tc::f16>(1.f + 3 * 0x1p-11f) == tc::from_float<tc::f16>(1.f + 0x1p-9f));
  CHECK(tc::from_float<tc::f16>(1.f + 0x1p-11f + 0x1p-20f) ==
        tc::from_float<tc::f16>(1.f + 0x1p-10f));
  CHECK(tc::from_float<tc::bf16>(1.f + 0x1p-8f) == tc::from_float<tc::bf16>(1.f));
  CHECK(tc::from_float<tc::f16>(65520.f) == 0x7c00);  // rounds to inf
  CHECK(tc::from_float<tc::f16>(65519.f) == 0x7bff);
  CHECK(tc::from_float<tc::f16>(0x1p-25f) == 0);    // half the smallest subnormal: to even
  CHECK(tc::from_float<tc::f16>(0x1.8p-25f) == 1);  // above it: the smallest subnormal
  CHECK(std::isnan(tc::to_float<tc::f16>(tc::from_float<tc::f16>(NAN))));
  CHECK(std::isnan(tc::to_float<tc::bf16>(tc::from_float<tc::bf16>(NAN))));
}

}  // namespace
