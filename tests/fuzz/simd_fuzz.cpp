// SPDX-License-Identifier: MIT
// A bounded differential fuzz driver of the SIMD backend (exec::simd) against the reference
// backend (exec::reference). Every byte string decodes deterministically into one case (dtype,
// shape, built-in policy with its parameters, data, scale, memory layouts), which is checked for:
//  - agreement with the reference: out, log-sum-exp, row statistics, dQ, dK, dV within the
//    README's normwise relative tolerance (simd_tol), each norm floored at the magnitude of the
//    computation (reference_magnitudes: the sum of |terms|, for results that cancel), and
//    identical selections (saved kept sets, empty rows, statistics' indices); for input-dependent
//    policies on Gaussian-like data only when no exact score is near its row's selection
//    boundary (else the comparison is skipped and counted); on integer Q and K with a power-of-two
//    scale (exact scores) never skipped, so selections must agree at ties too;
//  - determinism: with_threads(1) and with_threads(2) give the same bits (outputs and record);
//  - no NaN or infinity in the outputs (the inputs are finite); an empty row has output 0, dQ 0
//    and log-sum-exp -inf;
//  - the padding gaps of strided output buffers are never written.
//
// Two front ends share the decoder and the checks: LLVMFuzzerTestOneInput (libFuzzer's entry
// point; aborts on a failure) and, unless SEMFOCUS_LIBFUZZER is defined, a main() that runs
// seeded random cases for a time budget, replays saved inputs, or writes a seed corpus
// (tests/fuzz/README.md).
//
// The byte format (version 1). Reads past the end give 0, so every string is a valid case; only
// the first `case_bytes` bytes are read, and failures are saved trimmed to them. Saved inputs
// (tests/fuzz/regressions) keep their meaning only while this decoding does: a new field must be
// appended after the last one and must decode 0 to the behaviour it replaces.
//   0      flags: bit 0 double; bit 1 integer (exact) Q and K; bit 2 a non-default scale, 2^e
//          times the default with e = {-1, 1, 2, -2}[bits 3-4], negated if bit 5
//   1, 2   batch, heads: 1 + byte % 3
//   3..10  n_q, n_k (max 130), d, d_v (max 70): two bytes each (biased_size)
//   11     policy kind: byte % 13 (policy_kind)
//   12..17 policy parameters a (u16), b (u16), c (u8), e (u8), read for every kind
//   18, 19 layouts of q, k, v, out, d_out, dq, dk, dv: 2 bits each (u16, little-endian)
//   20..23 padding of padded layouts: row 1 + byte % 4, head byte % 8, batch byte % 8, tail % 16
//   24..31 data seed (u64, little-endian); 32..39 policy seed (random_k and explicit_mask)
#if !defined(SEMFOCUS_HAS_XSIMD)
#error "simd_fuzz.cpp tests the SIMD backend: link semfocus::simd"
#endif

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <semfocus/semfocus.hpp>

#include "support/margins.hpp"
#include "support/simd_compare.hpp"
#include "support/strided.hpp"

namespace {

using namespace semfocus;
using namespace semfocus::test;

// ---- decoding ------------------------------------------------------------------------------

/// Number of bytes the decoder reads (the format above); later bytes are ignored.
constexpr std::size_t case_bytes = 40;

/// Reads a byte string front to back; every read past the end gives 0, so that any string (the
/// empty one included) decodes to a case.
class byte_reader {
 public:
  byte_reader(const std::uint8_t* data, std::size_t size) noexcept : data_(data), size_(size) {}

  std::uint8_t u8() noexcept { return pos_ < size_ ? data_[pos_++] : std::uint8_t{0}; }
  std::uint16_t u16() noexcept {
    const std::uint16_t lo = u8();
    return static_cast<std::uint16_t>(lo | (u8() << 8));
  }
  std::uint64_t u64() noexcept {
    std::uint64_t x = 0;
    for (int i = 0; i < 8; ++i) x |= std::uint64_t{u8()} << (8 * i);
    return x;
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

/// A size in [1, max] from two bytes, biased to small sizes but reaching max: the first byte
/// picks the range [1, 4], [1, 16], [1, 64] or [1, max] (each 1/4), the second the value (so
/// every size occurs, vector widths, tile edges (48 rows, 64 keys) and their neighbours too).
index_t biased_size(byte_reader& r, index_t max) {
  constexpr std::array<index_t, 4> caps = {4, 16, 64, std::numeric_limits<index_t>::max()};
  const index_t cap = std::min(caps[r.u8() % 4u], max);
  return 1 + index_t{r.u8()} % cap;
}

/// A count in [1, n] (n >= 1) from a: in [1, min(n, 8)] when a is odd, else in [1, n].
index_t pick_count(std::uint16_t a, index_t n) {
  const index_t range = (a & 1u) ? std::min<index_t>(n, 8) : n;
  return 1 + index_t{a >> 1} % range;
}

enum class policy_kind {
  dense,
  dense_causal,
  causal,
  banded,
  block_local,
  strided,
  global_tokens,
  explicit_mask,
  random_k,
  top_k,
  bottom_k,
  threshold,
  absolute_threshold,
};
/// Names of the kinds (in summaries and corpus file names; describe() writes the policy as code).
constexpr std::array<const char*, 13> policy_kind_names = {"dense",
                                                           "dense_causal",
                                                           "causal",
                                                           "banded",
                                                           "block_local",
                                                           "strided",
                                                           "global_tokens",
                                                           "explicit_mask",
                                                           "random_k",
                                                           "top_k",
                                                           "bottom_k",
                                                           "threshold",
                                                           "absolute_threshold"};

/// The fixed mask inside global_tokens.
enum class inner_kind { dense, banded, block_local, strided };
constexpr std::array<const char*, 4> inner_kind_names = {"dense", "banded", "block_local",
                                                         "strided"};

constexpr std::array<const char*, 3> layout_names = {"contiguous", "bshd", "padded"};
/// The tensors a case lays out, in the order of their layout bits.
constexpr std::array<const char*, 8> tensor_names = {"q",     "k",  "v",  "out",
                                                     "d_out", "dq", "dk", "dv"};

/// A built-in policy and its parameters, valid for the case's shape (checked by construction).
struct policy_spec {
  policy_kind kind = policy_kind::dense;
  index_t k = 1;        // banded, block_local, random_k, top_k, bottom_k (and the inner mask's)
  index_t stride = 1;   // strided (and the inner mask's)
  index_t local = 0;    // strided (and the inner mask's)
  bool causal = false;  // the inner dense mask
  index_t g = 0;        // global tokens
  inner_kind inner = inner_kind::dense;
  index_t mask_batch = 1, mask_heads = 1;  // explicit_mask extents: 1 (broadcast) or batch/heads
  int mask_tenths = 5;                     // explicit_mask: tenths of the keys kept, 0 to 10
  double tau = 0;                          // threshold, absolute_threshold
  std::uint64_t seed = 0;                  // random_k, explicit_mask
};

/// One decoded case.
struct fuzz_case {
  bool is_double = false;
  bool exact = false;  // integer Q and K in [-2, 2] and a power-of-two scale: exact scores
  attention_shape shape{};
  std::optional<double> scale_option;  // what attention_options gets (unset: the default)
  double scale = 1;                    // the scale in effect
  double score_std = 1;                // the scores' standard deviation (the unit of tau)
  policy_spec policy;
  std::array<layout, 8> layouts{};
  padding pad;
  std::uint64_t data_seed = 0;
};

/// tau = x score standard deviations; for exact scores (integer multiples of |scale|) rounded to
/// a multiple of half that unit, so that both scores exactly on the threshold (ties) and scores
/// half a unit away occur.
double decode_tau(double x, const fuzz_case& c) {
  const double t = x * c.score_std;
  if (!c.exact) return t;
  const double unit = std::abs(c.scale);
  return std::round(2 * t / unit) * unit / 2;
}

/// The policy from the six parameter bytes (a, b, c, e) and the policy seed, for the case's shape
/// and scale (already decoded in `fc`).
policy_spec decode_policy(byte_reader& r, const fuzz_case& fc) {
  const attention_shape& s = fc.shape;
  policy_spec p;
  p.kind = static_cast<policy_kind>(r.u8() % policy_kind_names.size());
  const std::uint16_t a = r.u16(), b = r.u16();
  const std::uint8_t c = r.u8(), e = r.u8();
  const index_t longest = std::max(s.n_q, s.n_k);
  // banded, strided and dense on n_k >= 0 keys (0: a global_tokens inner mask with G = n_k,
  // where banded is not chosen).
  auto fixed_params = [&](index_t n_k) {
    p.k = pick_count(a, std::max<index_t>(n_k, 1));
    p.stride = pick_count(a, n_k + 1);
    p.local = (e & 1u) ? 0 : index_t{e >> 1} % (n_k + 1);
    p.causal = (a & 1u) != 0;
  };
  switch (p.kind) {
    case policy_kind::banded:
    case policy_kind::strided:
      fixed_params(s.n_k);
      break;
    case policy_kind::block_local:
      p.k = pick_count(a, longest + 1);
      break;
    case policy_kind::global_tokens:
      p.inner = static_cast<inner_kind>(c % inner_kind_names.size());
      p.g = pick_count(b, std::min(s.n_q, s.n_k) + 1) - 1;
      if (p.inner == inner_kind::banded) p.g = std::min(p.g, s.n_k - 1);  // banded needs a key
      fixed_params(s.n_k - p.g);
      if (p.inner == inner_kind::block_local) p.k = pick_count(a, longest + 1);
      break;
    case policy_kind::explicit_mask:
      p.mask_batch = (c & 1u) ? s.batch : 1;
      p.mask_heads = (c & 2u) ? s.heads : 1;
      p.mask_tenths = e % 11;
      break;
    case policy_kind::random_k:
    case policy_kind::top_k:
    case policy_kind::bottom_k:
      p.k = pick_count(a, s.n_k);
      break;
    case policy_kind::threshold:
      p.tau = decode_tau((a & 0xffu) / 64.0, fc);  // [0, 4) standard deviations
      break;
    case policy_kind::absolute_threshold:
      p.tau = decode_tau((static_cast<int>(a & 0xffu) - 128) / 40.0, fc);  // [-3.2, 3.2)
      break;
    default:
      break;
  }
  return p;  // p.seed is read by decode, after the layouts (the byte order of the format)
}

/// A decoded case and the bytes it came from (the first case_bytes at most).
struct decoded {
  fuzz_case c;
  std::vector<std::uint8_t> bytes;
};

/// Decodes `data` (any length) into one valid case; deterministic, the same under every standard
/// library.
decoded decode(const std::uint8_t* data, std::size_t size) {
  byte_reader r(data, size);
  fuzz_case fc;
  const std::uint8_t flags = r.u8();
  fc.is_double = (flags & 1u) != 0;
  fc.exact = (flags & 2u) != 0;
  fc.shape.batch = 1 + r.u8() % 3;
  fc.shape.heads = 1 + r.u8() % 3;
  fc.shape.n_q = biased_size(r, 130);
  fc.shape.n_k = biased_size(r, 130);
  fc.shape.d = biased_size(r, 70);
  fc.shape.d_v = biased_size(r, 70);
  constexpr std::array<int, 4> exponents = {-1, 1, 2, -2};
  const double factor =
      (flags & 4u) ? std::ldexp((flags & 32u) ? -1.0 : 1.0, exponents[(flags >> 3) & 3u]) : 1.0;
  const double root_d = std::sqrt(static_cast<double>(fc.shape.d));
  if (fc.exact)
    fc.scale_option = exact_scale(fc.shape.d) * factor;  // a power of two: exact scores
  else if (flags & 4u)
    fc.scale_option = factor / root_d;
  fc.scale = fc.scale_option ? *fc.scale_option : 1.0 / root_d;
  // Entries of variance 1 (Gaussian-like) or 2 (integers in [-2, 2]) give scores of standard
  // deviation |scale| sqrt(d) times 1 or 2.
  fc.score_std = std::abs(fc.scale) * root_d * (fc.exact ? 2.0 : 1.0);
  fc.policy = decode_policy(r, fc);
  const std::uint16_t layout_bits = r.u16();
  for (std::size_t t = 0; t < fc.layouts.size(); ++t) {
    const unsigned bits = (layout_bits >> (2 * t)) & 3u;
    fc.layouts[t] = bits == 1 ? layout::bshd : bits == 2 ? layout::padded : layout::contiguous;
  }
  fc.pad.seq = 1 + r.u8() % 4;
  fc.pad.heads = r.u8() % 8;
  fc.pad.batch = r.u8() % 8;
  fc.pad.tail = r.u8() % 16;
  fc.data_seed = r.u64();
  fc.policy.seed = r.u64();
  return {fc, std::vector<std::uint8_t>(data, data + std::min(size, case_bytes))};
}

// ---- description ---------------------------------------------------------------------------

/// The policy as code, e.g. "global_tokens(banded(3), 2)".
std::string describe(const policy_spec& p) {
  std::ostringstream os;
  os.precision(17);
  const char* name = policy_kind_names[static_cast<std::size_t>(p.kind)];
  auto fixed = [&](inner_kind k) {  // banded, block_local, strided, dense
    if (k == inner_kind::dense)
      os << (p.causal ? "dense{.is_causal = true}" : "dense{}");
    else if (k == inner_kind::strided)
      os << "strided(" << p.stride << ", " << p.local << ")";
    else
      os << inner_kind_names[static_cast<std::size_t>(k)] << "(" << p.k << ")";
  };
  switch (p.kind) {
    case policy_kind::dense:
      os << "dense{}";
      break;
    case policy_kind::dense_causal:
      os << "dense{.is_causal = true}";
      break;
    case policy_kind::causal:
      os << "causal{}";
      break;
    case policy_kind::banded:
      fixed(inner_kind::banded);
      break;
    case policy_kind::block_local:
      fixed(inner_kind::block_local);
      break;
    case policy_kind::strided:
      fixed(inner_kind::strided);
      break;
    case policy_kind::global_tokens:
      os << "global_tokens(";
      fixed(p.inner);
      os << ", " << p.g << ")";
      break;
    case policy_kind::explicit_mask:
      os << "explicit_mask(bool [" << p.mask_batch << ", " << p.mask_heads << ", n_q, n_k], keeps ~"
         << 10 * p.mask_tenths << "%, seed " << p.seed << ")";
      break;
    case policy_kind::random_k:
      os << "random_k(" << p.k << ", " << p.seed << ")";
      break;
    case policy_kind::top_k:
    case policy_kind::bottom_k:
      os << name << "(" << p.k << ")";
      break;
    case policy_kind::threshold:
    case policy_kind::absolute_threshold:
      os << name << "(" << p.tau << ")";
      break;
  }
  return os.str();
}

/// The case in words, one property a line.
std::string describe(const fuzz_case& c) {
  const attention_shape& s = c.shape;
  std::ostringstream os;
  os.precision(17);
  os << "  dtype: " << (c.is_double ? "double" : "float") << "\n  data: "
     << (c.exact ? "integer Q and K in [-2, 2] (exact scores), Gaussian-like V and dO"
                 : "Gaussian-like Q, K, V and dO")
     << ", data seed " << c.data_seed << "\n  shape: batch " << s.batch << ", heads " << s.heads
     << ", n_q " << s.n_q << ", n_k " << s.n_k << ", d " << s.d << ", d_v " << s.d_v
     << "\n  policy: " << describe(c.policy) << "\n  scale: " << c.scale
     << (c.scale_option ? " (attention_options::scale)" : " (the default 1/sqrt(d))")
     << "\n  layouts:";
  for (std::size_t t = 0; t < c.layouts.size(); ++t)
    os << " " << tensor_names[t] << "=" << layout_names[static_cast<std::size_t>(c.layouts[t])];
  os << " (padding: row " << c.pad.seq << ", head " << c.pad.heads << ", batch " << c.pad.batch
     << ", tail " << c.pad.tail << ")";
  return os.str();
}

/// The bytes in hex, space-separated.
std::string hex_bytes(const std::vector<std::uint8_t>& bytes) {
  std::string s;
  char buf[8];
  for (std::uint8_t x : bytes) {
    std::snprintf(buf, sizeof buf, s.empty() ? "%02x" : " %02x", x);
    s += buf;
  }
  return s;
}

// ---- running and checking one case ---------------------------------------------------------

/// What one case did: the failed properties, and what it covered.
struct case_outcome {
  differences failures;
  bool reference_skipped = false;  // near a selection tie: not compared with the reference
  bool saved_selection = false;    // the simd record saved the kept sets
  bool empty_rows = false;         // some row kept nothing
  bool ill_conditioned = false;    // agreed within the magnitude floors only, not plain normwise
};

/// How close (relative to the largest |score|) an exact score of a Gaussian-like problem may come
/// to its row's selection boundary before the reference comparison is skipped: the two backends'
/// scores differ by about 1e-6 relatively in float and 1e-15 in double.
template <class T>
constexpr double tie_margin = std::is_same_v<T, float> ? 1e-4 : 1e-9;

/// Approximately N(0, 1): the centred sum of four uniforms scaled to unit variance (Irwin-Hall),
/// computed with exact IEEE operations only, so the same bits under every standard library
/// (std::normal_distribution's algorithm is unspecified).
double gaussian_like(std::mt19937_64& gen) {
  double sum = 0;
  for (int i = 0; i < 4; ++i) sum += static_cast<double>(gen() >> 11) * 0x1p-53;
  return (sum - 2.0) * 1.7320508075688772;  // variance 4/12 times 3
}

/// The case's Q, K, V and dO from its data seed.
template <class T>
problem<T> make_problem(const fuzz_case& c) {
  problem<T> pr(c.shape, 0);  // its std::normal_distribution values are all replaced below
  std::mt19937_64 gen(c.data_seed);
  for (tensor<T>* t : {&pr.q, &pr.k})
    for (T& x : t->data)
      x = c.exact ? static_cast<T>(static_cast<int>(gen() % 5) - 2)
                  : static_cast<T>(gaussian_like(gen));
  for (tensor<T>* t : {&pr.v, &pr.d_out})
    for (T& x : t->data) x = static_cast<T>(gaussian_like(gen));
  return pr;
}

/// q, k, v and d_out in the case's layouts, their gaps holding NaN (never to reach a result).
template <class T>
struct laid_out_inputs {
  strided_tensor<T> q, k, v, d_out;
};

/// One simd forward + backward on the case's layouts: the outputs as contiguous tensors, the
/// record, and which outputs had a padding element written.
template <class P, class T>
struct simd_run {
  result<P, T> r;
  differences gaps;
};

template <class P, class T>
simd_run<P, T> run_simd(const exec::simd_t& ex, const P& p, const fuzz_case& c,
                        const laid_out_inputs<T>& in, const attention_options& opt) {
  const attention_shape& s = c.shape;
  // In-view elements start as NaN (an element never written shows), gaps as a sentinel.
  const T nan = std::numeric_limits<T>::quiet_NaN(), sentinel = T(-7.25);
  auto out = restride(tensor<T>(s.out(), nan), c.layouts[3], sentinel, c.pad);
  auto dq = restride(tensor<T>(s.q(), nan), c.layouts[5], sentinel, c.pad);
  auto dk = restride(tensor<T>(s.k(), nan), c.layouts[6], sentinel, c.pad);
  auto dv = restride(tensor<T>(s.v(), nan), c.layouts[7], sentinel, c.pad);
  simd_run<P, T> run;
  forward(ex, p, in.q.cview(), in.k.cview(), in.v.cview(), out.view(), run.r.record, opt);
  backward(ex, p, in.q.cview(), in.k.cview(), in.v.cview(), out.cview(), in.d_out.cview(),
           run.r.record, dq.view(), dk.view(), dv.view());
  run.r.out = out.contiguous();
  run.r.dq = dq.contiguous();
  run.r.dk = dk.contiguous();
  run.r.dv = dv.contiguous();
  const std::array<const strided_tensor<T>*, 4> outputs = {&out, &dq, &dk, &dv};
  const std::array<const char*, 4> names = {"out", "dQ", "dK", "dV"};
  for (std::size_t x = 0; x < outputs.size(); ++x)
    if (!outputs[x]->gaps_untouched())
      run.gaps.push_back(std::string(names[x]) + ": an element of its padding was written");
  return run;
}

/// Adds "<prefix><each of from>" to `to`.
void append(differences& to, const std::string& prefix, const differences& from) {
  for (const std::string& x : from) to.push_back(prefix + x);
}

/// Counts rows that violate one property and remembers the first, for one line of report.
class row_tally {
 public:
  explicit row_tally(std::string what) : what_(std::move(what)) {}
  void add(index_t b, index_t h, index_t i) {
    if (count_++ == 0)
      first_ = "(" + std::to_string(b) + ", " + std::to_string(h) + ", " + std::to_string(i) + ")";
  }
  void report(differences& d) const {
    if (count_ > 0)
      d.push_back(std::to_string(count_) + " rows " + what_ + "; first (b, h, i) = " + first_);
  }

 private:
  std::string what_;
  std::size_t count_ = 0;
  std::string first_;
};

/// The magnitudes of the reference computation, as norm floors: for each output, the largest over
/// its entries of the sum of the absolute values of the terms that make it:
///   out_ic: sum_j P_ij |v_jc|                       dV_jc: sum_i P_ij |dO_ic|
///   dQ_ic:  |scale| sum_j P_ij A_ij |k_jc|          dK_jc: |scale| sum_i P_ij A_ij |q_ic|
///   lse_i:  |lse_i| + max_j S_ij                    row statistics (scores): max_ij S_ij
/// with A_ij = |dP_ij| + |D_i| (dS_ij = P_ij (dP_ij - D_i), D_i = rowsum(dO_i * O_i)) and
/// S_ij = |scale| sum_c |q_ic k_jc| (a score's rounding error is about eps S_ij). Sums run over the
/// reference's kept pairs `kept`, P from its log-sum-exp. Where a result cancels far below its
/// terms (nearly one-hot rows, rows keeping one key, short sums of mixed signs), any two correct
/// summation orders differ by rounding of the terms, and the plain normwise error measures the
/// conditioning, not the backend (such inputs gave plain errors up to 1.6e-3 in float). Where
/// nothing cancels, the floors are a few times the results' own norms. O(batch heads kept
/// (d + d_v)).
template <class P, class T>
norm_floors reference_magnitudes(const problem<T>& pr, const result<P, T>& ref,
                                 const kept_sets& kept, double scale) {
  const attention_shape& s = pr.shape;
  const double abs_scale = std::abs(scale);
  tensor<double> dk_mag(s.k()), dv_mag(s.v());
  std::vector<double> out_row(static_cast<std::size_t>(s.d_v)),
      dq_row(static_cast<std::size_t>(s.d));
  norm_floors f;
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t i = 0; i < s.n_q; ++i) {
        const auto r = static_cast<std::size_t>(ref.record.row_index(b, h, i));
        if (kept[r].empty()) continue;
        const double lse = ref.record.lse[r];
        std::fill(out_row.begin(), out_row.end(), 0.0);
        std::fill(dq_row.begin(), dq_row.end(), 0.0);
        double d_i = 0, max_s = 0;  // D_i, max_j S_ij
        for (index_t c = 0; c < s.d_v; ++c)
          d_i += static_cast<double>(pr.d_out(b, h, i, c)) * ref.out(b, h, i, c);
        for (const std::uint32_t key : kept[r]) {
          const auto j = static_cast<index_t>(key);
          double dot = 0, abs_dot = 0, dp = 0;
          for (index_t c = 0; c < s.d; ++c) {
            const double x = static_cast<double>(pr.q(b, h, i, c)) * pr.k(b, h, j, c);
            dot += x;
            abs_dot += std::abs(x);
          }
          for (index_t c = 0; c < s.d_v; ++c)
            dp += static_cast<double>(pr.d_out(b, h, i, c)) * pr.v(b, h, j, c);
          max_s = std::max(max_s, abs_scale * abs_dot);
          const double p_ij = std::exp(scale * dot - lse), a = std::abs(dp) + std::abs(d_i);
          for (index_t c = 0; c < s.d_v; ++c) {
            out_row[std::size_t(c)] += p_ij * std::abs(static_cast<double>(pr.v(b, h, j, c)));
            dv_mag(b, h, j, c) += p_ij * std::abs(static_cast<double>(pr.d_out(b, h, i, c)));
          }
          for (index_t c = 0; c < s.d; ++c) {
            dq_row[std::size_t(c)] += p_ij * a * std::abs(static_cast<double>(pr.k(b, h, j, c)));
            dk_mag(b, h, j, c) += p_ij * a * std::abs(static_cast<double>(pr.q(b, h, i, c)));
          }
        }
        f.out = std::max(f.out, max_abs(out_row));
        f.dq = std::max(f.dq, abs_scale * max_abs(dq_row));
        f.lse = std::max(f.lse, std::abs(lse) + max_s);
        f.stats = std::max(f.stats, max_s);
      }
  f.dk = abs_scale * max_abs(dk_mag.data);
  f.dv = max_abs(dv_mag.data);
  return f;
}

/// Every check of the module comment on policy `p` and problem `pr` of case `c`.
template <class P, class T>
void check_case(const fuzz_case& c, const P& p, const problem<T>& pr, case_outcome& o) {
  const attention_shape& s = c.shape;
  attention_options opt;
  opt.scale = c.scale_option;

  // Input-dependent policies on inexact scores: compare with the reference only away from ties.
  bool compare_reference = true;
  if constexpr (!is_input_agnostic_v<P>) {
    if (!c.exact) {
      double largest = 0;
      const double margin = problem_margin(p, pr, c.scale, &largest);
      compare_reference =
          margin >= tie_margin<T> * std::max(largest, std::numeric_limits<double>::min());
    }
  }
  o.reference_skipped = !compare_reference;

  const T nan = std::numeric_limits<T>::quiet_NaN();
  const laid_out_inputs<T> in{
      restride(pr.q, c.layouts[0], nan, c.pad), restride(pr.k, c.layouts[1], nan, c.pad),
      restride(pr.v, c.layouts[2], nan, c.pad), restride(pr.d_out, c.layouts[4], nan, c.pad)};
  const simd_run<P, T> one = run_simd(exec::simd.with_threads(1), p, c, in, opt);
  const simd_run<P, T> two = run_simd(exec::simd.with_threads(2), p, c, in, opt);
  const forward_record_t<P, T>& rec = one.r.record;
  o.saved_selection = rec.has_selection();

  // Padding, and no NaN or infinity from finite inputs.
  append(o.failures, "threads 1: ", one.gaps);
  append(o.failures, "threads 2: ", two.gaps);
  const std::array<const tensor<T>*, 4> outputs = {&one.r.out, &one.r.dq, &one.r.dk, &one.r.dv};
  const std::array<const char*, 4> names = {"out", "dQ", "dK", "dV"};
  for (std::size_t x = 0; x < outputs.size(); ++x)
    if (!all_finite(outputs[x]->data))
      o.failures.push_back(std::string(names[x]) + ": a NaN or infinite element (finite inputs)");

  // Bit-identical for 1 and 2 threads.
  const std::array<const tensor<T>*, 4> outputs2 = {&two.r.out, &two.r.dq, &two.r.dk, &two.r.dv};
  for (std::size_t x = 0; x < outputs.size(); ++x)
    if (!same_bits(outputs[x]->data, outputs2[x]->data))
      o.failures.push_back(std::string(names[x]) + ": threads 1 and 2 differ in bits");
  append(o.failures, "threads 1 vs 2: ", record_bit_differences<P, T>(rec, two.r.record));

  // Empty rows (log-sum-exp -inf): output 0 and dQ 0; and, against the reference's kept sets,
  // exactly the rows that keep nothing.
  kept_sets kept;
  std::optional<result<P, T>> ref;
  if (compare_reference) {
    ref = run_reference(p, pr, opt);
    kept = reference_kept_sets(p, pr, ref->record);
  }
  row_tally bad_lse("with a NaN or +inf log-sum-exp"), nonzero_out("empty but with output != 0"),
      nonzero_dq("empty but with dQ != 0"),
      emptiness("whose emptiness differs from the reference's kept sets");
  for (index_t b = 0; b < s.batch; ++b)
    for (index_t h = 0; h < s.heads; ++h)
      for (index_t i = 0; i < s.n_q; ++i) {
        const auto r = static_cast<std::size_t>(rec.row_index(b, h, i));
        const double lse = rec.lse[r];
        if (std::isnan(lse) || lse == std::numeric_limits<double>::infinity()) bad_lse.add(b, h, i);
        const bool empty = lse == -std::numeric_limits<double>::infinity();
        o.empty_rows = o.empty_rows || empty;
        if (empty && !row_is_zero(one.r.out, b, h, i)) nonzero_out.add(b, h, i);
        if (empty && !row_is_zero(one.r.dq, b, h, i)) nonzero_dq.add(b, h, i);
        if (compare_reference && kept[r].empty() != empty) emptiness.add(b, h, i);
      }
  for (const row_tally* t : {&bad_lse, &nonzero_out, &nonzero_dq, &emptiness})
    t->report(o.failures);

  if (!compare_reference) return;
  // Against the reference, normwise, with every norm floored at the magnitude of the computation
  // (reference_magnitudes): where a result cancels far below the terms it sums, correct
  // implementations differ by rounding of those terms, not of the result.
  const norm_floors floors = reference_magnitudes(pr, *ref, kept, c.scale);
  const differences forward_diff =
      forward_differences(one.r.out, rec, *ref, kept, /*exact_scores=*/c.exact, floors);
  const differences gradient_diff =
      gradient_differences(one.r.dq, one.r.dk, one.r.dv, *ref, /*whole_norm=*/false, floors);
  append(o.failures, "vs reference: ", forward_diff);
  append(o.failures, "vs reference: ", gradient_diff);
  o.ill_conditioned = forward_diff.empty() && gradient_diff.empty() &&
                      !(forward_differences(one.r.out, rec, *ref, kept, c.exact).empty() &&
                        gradient_differences(one.r.dq, one.r.dk, one.r.dv, *ref).empty());
  if (rec.has_selection()) {
    // Without its saved selection, backward re-derives the kept sets from the statistics.
    auto bare = rec;
    bare.selection_offsets.clear();
    bare.selection.clear();
    tensor<T> dq(s.q()), dk(s.k()), dv(s.v());
    backward(exec::simd.with_threads(1), p, pr.q.view(), pr.k.view(), pr.v.view(),
             one.r.out.cview(), pr.d_out.view(), bare, dq.view(), dk.view(), dv.view());
    append(o.failures, "backward without the saved selection vs reference: ",
           gradient_differences(dq, dk, dv, *ref, /*whole_norm=*/false, floors));
  }
}

/// Calls f(policy) with the policy of spec `p` for shape `s` (an explicit mask lives until f
/// returns).
template <class F>
void with_policy(const policy_spec& p, const attention_shape& s, F&& f) {
  auto with_fixed = [&](inner_kind k, auto&& g) {
    switch (k) {
      case inner_kind::dense:
        return g(dense{.is_causal = p.causal});
      case inner_kind::banded:
        return g(banded(p.k));
      case inner_kind::block_local:
        return g(block_local(p.k));
      case inner_kind::strided:
        return g(strided(p.stride, p.local));
    }
  };
  switch (p.kind) {
    case policy_kind::dense:
      return f(dense{});
    case policy_kind::dense_causal:
      return f(dense{.is_causal = true});
    case policy_kind::causal:
      return f(causal{});
    case policy_kind::banded:
      return with_fixed(inner_kind::banded, f);
    case policy_kind::block_local:
      return with_fixed(inner_kind::block_local, f);
    case policy_kind::strided:
      return with_fixed(inner_kind::strided, f);
    case policy_kind::global_tokens:
      return with_fixed(p.inner, [&](const auto& inner) { f(global_tokens(inner, p.g)); });
    case policy_kind::explicit_mask: {
      const tensor_shape ms{p.mask_batch, p.mask_heads, s.n_q, s.n_k};
      const auto n = static_cast<std::size_t>(ms.size());
      const auto mask = std::make_unique<bool[]>(n);
      std::mt19937_64 gen(p.seed ^ 0x6d61736bull);
      for (std::size_t x = 0; x < n; ++x) mask[x] = static_cast<int>(gen() % 10) < p.mask_tenths;
      return f(explicit_mask(tensor_view<const bool>(mask.get(), ms)));
    }
    case policy_kind::random_k:
      return f(random_k(p.k, p.seed));
    case policy_kind::top_k:
      return f(top_k(p.k));
    case policy_kind::bottom_k:
      return f(bottom_k(p.k));
    case policy_kind::threshold:
      return f(threshold(p.tau));
    case policy_kind::absolute_threshold:
      return f(absolute_threshold(p.tau));
  }
}

/// Runs every check on case `c`; an exception (none is expected: the case is valid) is a failure.
case_outcome run_case(const fuzz_case& c) {
  case_outcome o;
  try {
    auto typed = [&](auto zero) {
      using T = decltype(zero);
      const problem<T> pr = make_problem<T>(c);
      with_policy(c.policy, c.shape, [&](const auto& p) { check_case(c, p, pr, o); });
    };
    if (c.is_double)
      typed(0.0);
    else
      typed(0.0f);
  } catch (const std::exception& e) {
    o.failures.push_back(std::string("threw on a valid case: ") + e.what());
  }
  return o;
}

/// The report of a failed case: the case, its bytes and every failed property.
std::string failure_report(const decoded& d, const case_outcome& o) {
  std::string s = "case:\n" + describe(d.c) + "\n  bytes: " + hex_bytes(d.bytes) + "\nfailed:";
  for (const std::string& f : o.failures) s += "\n  " + f;
  return s + "\n";
}

}  // namespace

/// libFuzzer's entry point: decodes and checks one case; on a failure prints it and aborts.
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const decoded d = decode(data, size);
  const case_outcome o = run_case(d.c);
  if (!o.failures.empty()) {
    std::fprintf(stderr, "semfocus_simd_fuzz: FAILED\n%s", failure_report(d, o).c_str());
    std::abort();
  }
  return 0;
}

namespace {

/// The xsimd arch the backend is compiled for and the CPU's best, with a NOTE when narrower.
void print_arch() {
  std::printf("%s\n", simd_arch().describe().c_str());
  std::fflush(stdout);
}

}  // namespace

#if defined(SEMFOCUS_LIBFUZZER)

/// libFuzzer calls this once before the first input.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  print_arch();
  return 0;
}

#else  // the seeded random driver, replay and corpus writer

namespace {

namespace fs = std::filesystem;

/// The bytes of case number `index` of the random stream `seed`: 64 to 128 bytes from
/// std::mt19937_64 seeded through std::seed_seq with (seed, index), both fully specified by the
/// standard, so the stream is the same under every standard library.
std::vector<std::uint8_t> random_case_bytes(std::uint64_t seed, std::uint64_t index) {
  std::seed_seq seq{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32),
                    static_cast<std::uint32_t>(index), static_cast<std::uint32_t>(index >> 32)};
  std::mt19937_64 gen(seq);
  std::vector<std::uint8_t> bytes(64 + gen() % 65);
  for (std::uint8_t& x : bytes) x = static_cast<std::uint8_t>(gen() >> 56);
  return bytes;
}

/// 64-bit FNV-1a of the bytes, as 16 hex digits.
std::string hash_hex(const std::vector<std::uint8_t>& bytes) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::uint8_t x : bytes) h = (h ^ x) * 0x100000001b3ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

/// Writes bytes to path; false on an I/O error.
bool write_file(const fs::path& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return static_cast<bool>(f);
}

/// Counters of a run, for the summary.
struct run_stats {
  std::uint64_t cases = 0, failed = 0, skipped = 0, ill_conditioned = 0, saved_selection = 0,
                empty_rows = 0, exact = 0, strided = 0;
  std::map<std::string, std::uint64_t> per_policy, per_dtype;

  void add(const fuzz_case& c, const case_outcome& o) {
    ++cases;
    failed += !o.failures.empty();
    skipped += o.reference_skipped;
    ill_conditioned += o.ill_conditioned;
    saved_selection += o.saved_selection;
    empty_rows += o.empty_rows;
    exact += c.exact;
    strided += std::any_of(c.layouts.begin(), c.layouts.end(),
                           [](layout l) { return l != layout::contiguous; });
    ++per_policy[policy_kind_names[static_cast<std::size_t>(c.policy.kind)]];
    ++per_dtype[c.is_double ? "double" : "float"];
  }

  void print(double seconds) const {
    std::printf("summary: %llu cases in %.1f s (%.1f cases/s), %llu failed\n",
                static_cast<unsigned long long>(cases), seconds,
                seconds > 0 ? static_cast<double>(cases) / seconds : 0.0,
                static_cast<unsigned long long>(failed));
    std::printf("  reference comparisons skipped for near-ties: %llu\n",
                static_cast<unsigned long long>(skipped));
    std::printf("  ill-conditioned cases (within simd_tol of the magnitude floors only): %llu\n",
                static_cast<unsigned long long>(ill_conditioned));
    std::printf(
        "  exact-score cases %llu, non-contiguous layouts %llu, saved selections %llu, "
        "empty rows %llu\n",
        static_cast<unsigned long long>(exact), static_cast<unsigned long long>(strided),
        static_cast<unsigned long long>(saved_selection),
        static_cast<unsigned long long>(empty_rows));
    std::printf("  per dtype:");
    for (const auto& [name, n] : per_dtype)
      std::printf(" %s %llu", name.c_str(), static_cast<unsigned long long>(n));
    std::printf("\n  per policy:");
    for (const auto& [name, n] : per_policy)
      std::printf(" %s %llu", name.c_str(), static_cast<unsigned long long>(n));
    std::printf("\n");
  }
};

/// Prints a failed case (and where it was saved, if it was) to stderr.
void print_failure(const std::string& title, const decoded& d, const case_outcome& o) {
  std::fprintf(stderr, "FAILED %s\n%s", title.c_str(), failure_report(d, o).c_str());
  std::fflush(stderr);
}

/// Bad usage: a message naming the option and the expected value, exit status 2.
[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr,
               "semfocus_simd_fuzz: %s\n"
               "usage: semfocus_simd_fuzz --seconds S [--seed N] [--max-cases M] [--save-dir DIR]\n"
               "       semfocus_simd_fuzz --max-cases M [--seed N] [--save-dir DIR]\n"
               "       semfocus_simd_fuzz --replay PATH...      (files, or directories of *.bin)\n"
               "       semfocus_simd_fuzz --write-corpus DIR [--seed N]\n",
               message.c_str());
  std::exit(2);
}

/// The whole of `text` as an unsigned integer, or a usage error naming `option`.
std::uint64_t parse_count(const std::string& option, const std::string& text, bool positive) {
  std::size_t used = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(text, &used, 0);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size() || text[0] == '-' || (positive && v == 0))
    usage_error(option + " expects " + (positive ? "a positive" : "a non-negative") +
                " integer, got '" + text + "'");
  return v;
}

/// Seeded random cases until `seconds` (if set) or `max_cases` (if set) is reached; failures
/// saved in `save_dir`. Exit status 1 if any case failed.
int run_random(std::optional<double> seconds, std::optional<std::uint64_t> max_cases,
               std::uint64_t seed, const fs::path& save_dir) {
  std::printf("random cases: seed %llu, for %g s, %s cases\n",
              static_cast<unsigned long long>(seed), seconds ? *seconds : INFINITY,
              max_cases ? ("at most " + std::to_string(*max_cases)).c_str() : "no limit on");
  std::fflush(stdout);
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  run_stats stats;
  for (std::uint64_t index = 0;; ++index) {
    if (max_cases && index >= *max_cases) break;
    if (seconds && elapsed() >= *seconds) break;
    const std::vector<std::uint8_t> bytes = random_case_bytes(seed, index);
    const decoded d = decode(bytes.data(), bytes.size());
    const case_outcome o = run_case(d.c);
    stats.add(d.c, o);
    if (o.failures.empty()) continue;
    std::error_code ec;
    fs::create_directories(save_dir, ec);
    const fs::path path = save_dir / ("failure-" + hash_hex(d.bytes) + ".bin");
    const bool saved = write_file(path, d.bytes);
    print_failure(
        "case " + std::to_string(index) + " of seed " + std::to_string(seed) +
            (saved ? ", saved as " + path.string() + " (replay: --replay " + path.string() + ")"
                   : ", NOT saved: cannot write " + path.string()),
        d, o);
  }
  stats.print(elapsed());
  return stats.failed == 0 ? 0 : 1;
}

/// The byte strings of `paths`: files, or every *.bin file of a directory in name order. A
/// missing path or a directory with no *.bin file is a usage error.
std::vector<std::pair<fs::path, std::vector<std::uint8_t>>> read_inputs(
    const std::vector<std::string>& paths) {
  std::vector<std::pair<fs::path, std::vector<std::uint8_t>>> inputs;
  for (const std::string& p : paths) {
    std::vector<fs::path> files;
    std::error_code ec;
    if (fs::is_directory(p, ec)) {
      for (const auto& entry : fs::directory_iterator(p, ec))
        if (entry.is_regular_file() && entry.path().extension() == ".bin")
          files.push_back(entry.path());
      if (files.empty()) usage_error("--replay: directory '" + p + "' holds no *.bin input");
      std::sort(files.begin(), files.end());
    } else if (fs::is_regular_file(p, ec)) {
      files.emplace_back(p);
    } else {
      usage_error("--replay expects existing files or directories, got '" + p + "'");
    }
    for (const fs::path& f : files) {
      std::ifstream in(f, std::ios::binary);
      std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                      std::istreambuf_iterator<char>());
      if (!in.good() && !in.eof()) usage_error("--replay: cannot read '" + f.string() + "'");
      inputs.emplace_back(f, std::move(bytes));
    }
  }
  return inputs;
}

/// Replays each input as one case. Exit status 1 if any failed.
int run_replay(const std::vector<std::string>& paths) {
  const auto inputs = read_inputs(paths);
  std::size_t failed = 0;
  for (const auto& [path, bytes] : inputs) {
    const decoded d = decode(bytes.data(), bytes.size());
    const case_outcome o = run_case(d.c);
    if (o.failures.empty()) {
      std::printf("ok %s: %s %s\n", path.filename().string().c_str(),
                  d.c.is_double ? "double" : "float", describe(d.c.policy).c_str());
    } else {
      ++failed;
      print_failure(path.string(), d, o);
    }
  }
  std::printf("replayed %zu inputs, %zu failed\n", inputs.size(), failed);
  return failed == 0 ? 0 : 1;
}

/// What a case covers, for the corpus: policy kind (and the global tokens' inner mask, the
/// explicit mask's broadcast), dtype, data mode (and input-dependent policies on exact scores),
/// sizes beyond one row task, key tile or vector, layouts, scale, saved selections, empty rows,
/// ill-conditioning.
std::set<std::string> features(const fuzz_case& c, const case_outcome& o) {
  std::set<std::string> f;
  const policy_spec& p = c.policy;
  f.insert(std::string("policy ") + policy_kind_names[static_cast<std::size_t>(p.kind)]);
  if (p.kind == policy_kind::global_tokens)
    f.insert(std::string("global_tokens inner ") +
             inner_kind_names[static_cast<std::size_t>(p.inner)]);
  if (p.kind == policy_kind::explicit_mask)
    f.insert(p.mask_batch == 1 && p.mask_heads == 1 ? "mask broadcast" : "mask per head");
  f.insert(c.is_double ? "double" : "float");
  f.insert(c.exact ? "exact data" : "gaussian data");
  const bool input_dependent = p.kind == policy_kind::top_k || p.kind == policy_kind::bottom_k ||
                               p.kind == policy_kind::threshold ||
                               p.kind == policy_kind::absolute_threshold;
  if (c.exact && input_dependent)  // selections compared at ties too
    f.insert(std::string("exact ") + policy_kind_names[static_cast<std::size_t>(p.kind)]);
  if (c.shape.n_q > 48) f.insert("n_q > 48 (several row tasks)");
  if (c.shape.n_k > 64) f.insert("n_k > 64 (several key tiles)");
  if (c.shape.d > 16) f.insert("d > 16 (several vectors)");
  for (layout l : c.layouts) f.insert(std::string("layout ") + layout_names[std::size_t(l)]);
  if (c.scale_option && !c.exact) f.insert("explicit scale");
  if (c.scale < 0) f.insert("negative scale");
  if (o.saved_selection) f.insert("saved selection");
  if (o.empty_rows) f.insert("empty rows");
  if (o.ill_conditioned) f.insert("ill-conditioned");
  return f;
}

/// Writes a small corpus covering every feature (features()) to `dir`: a greedy pass over the
/// random cases of `seed` (small ones only, so that replaying them is quick) keeping each passing
/// case that adds a feature. Exit status 1 if a case fails or a feature stays uncovered.
int write_corpus(const fs::path& dir, std::uint64_t seed) {
  std::set<std::string> wanted;
  for (const char* name : policy_kind_names) wanted.insert(std::string("policy ") + name);
  for (const char* name : inner_kind_names)
    wanted.insert(std::string("global_tokens inner ") + name);
  for (const char* name : layout_names) wanted.insert(std::string("layout ") + name);
  for (const char* name :
       {"exact top_k", "exact bottom_k", "exact threshold", "exact absolute_threshold",
        "n_q > 48 (several row tasks)", "n_k > 64 (several key tiles)", "d > 16 (several vectors)",
        "mask broadcast", "mask per head", "float", "double", "exact data", "gaussian data",
        "explicit scale", "negative scale", "saved selection", "empty rows", "ill-conditioned"})
    wanted.insert(name);
  std::error_code ec;
  fs::create_directories(dir, ec);
  int written = 0, failed = 0;
  for (std::uint64_t index = 0; index < 100000 && !wanted.empty(); ++index) {
    const std::vector<std::uint8_t> bytes = random_case_bytes(seed, index);
    const decoded d = decode(bytes.data(), bytes.size());
    const attention_shape& s = d.c.shape;
    if (s.batch * s.heads * s.n_q * s.n_k * (s.d + s.d_v) > 100000) continue;
    const case_outcome o = run_case(d.c);
    if (!o.failures.empty()) {
      ++failed;
      print_failure("corpus candidate " + std::to_string(index), d, o);
      continue;
    }
    if (o.reference_skipped) continue;  // a regression input must compare with the reference
    std::set<std::string> covers;
    for (const std::string& f : features(d.c, o))
      if (wanted.erase(f)) covers.insert(f);
    if (covers.empty()) continue;
    char file[128];
    std::snprintf(file, sizeof file, "seed-%02d-%s-%s-%s.bin", written,
                  policy_kind_names[static_cast<std::size_t>(d.c.policy.kind)],
                  d.c.is_double ? "double" : "float", d.c.exact ? "exact" : "gaussian");
    if (!write_file(dir / file, d.bytes)) {
      std::fprintf(stderr, "semfocus_simd_fuzz: cannot write %s\n", (dir / file).c_str());
      return 1;
    }
    std::string list;
    for (const std::string& f : covers) list += (list.empty() ? "" : ", ") + f;
    std::printf("%s: %s; covers %s\n", file, describe(d.c.policy).c_str(), list.c_str());
    ++written;
  }
  for (const std::string& f : wanted) std::fprintf(stderr, "not covered: %s\n", f.c_str());
  std::printf("wrote %d inputs to %s\n", written, dir.c_str());
  return failed == 0 && wanted.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<double> seconds;
  std::optional<std::uint64_t> max_cases;
  std::uint64_t seed = 1;
  fs::path save_dir = ".";
  std::optional<fs::path> corpus_dir;
  std::vector<std::string> replay;
  bool replaying = false;
  for (int a = 1; a < argc; ++a) {
    const std::string opt = argv[a];
    auto value = [&]() -> std::string {
      if (a + 1 >= argc) usage_error(opt + " expects a value");
      return argv[++a];
    };
    if (opt == "--seconds") {
      const std::string v = value();
      char* end = nullptr;
      const double s = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !(s > 0) || !std::isfinite(s))
        usage_error("--seconds expects a positive number of seconds, got '" + v + "'");
      seconds = s;
    } else if (opt == "--seed") {
      seed = parse_count(opt, value(), false);
    } else if (opt == "--max-cases") {
      max_cases = parse_count(opt, value(), true);
    } else if (opt == "--save-dir") {
      save_dir = value();
    } else if (opt == "--write-corpus") {
      corpus_dir = value();
    } else if (opt == "--replay") {
      replaying = true;
      while (a + 1 < argc && std::string(argv[a + 1]).rfind("--", 0) != 0)
        replay.push_back(argv[++a]);
      if (replay.empty()) usage_error("--replay expects one or more files or directories");
    } else {
      usage_error("unknown option '" + opt + "'");
    }
  }
  if (int(replaying) + int(corpus_dir.has_value()) + int(seconds || max_cases) != 1)
    usage_error(
        "expects exactly one of --seconds S / --max-cases M, --replay PATH..., "
        "--write-corpus DIR");
  print_arch();
  if (replaying) return run_replay(replay);
  if (corpus_dir) return write_corpus(*corpus_dir, seed);
  return run_random(seconds, max_cases, seed, save_dir);
}

#endif  // SEMFOCUS_LIBFUZZER
