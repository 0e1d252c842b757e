// SPDX-License-Identifier: MIT
// Compile-time checks of the policy contract (policy/concepts.hpp): every built-in policy and the
// user policies of tests/support satisfy it with the right locality; small structs that break
// one clause of the contract each do not.
#include <doctest/doctest.h>

#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include <semfocus/semfocus.hpp>

#include "support/custom_policy.hpp"

namespace {

using semfocus::attention_policy;
using semfocus::elementwise_policy;
using semfocus::fixed_mask;
using semfocus::head_slice;
using semfocus::index_t;
using semfocus::is_input_agnostic_v;
using semfocus::locality;
using semfocus::no_statistic;
using semfocus::row_policy;
using semfocus::row_predicate;
using semfocus::row_statistic_t;
using semfocus::selection_policy;

// ---------------------------------------------------------------------------------------------
// Positives.

template <class P>
constexpr bool policy_for_both = attention_policy<P, float>&& attention_policy<P, double>;

template <class P>
constexpr bool elementwise_for_both =
    elementwise_policy<P, float>&& elementwise_policy<P, double> && !row_policy<P, float> &&
    !row_policy<P, double>;

template <class P>
constexpr bool row_for_both = row_policy<P, float>&& row_policy<P, double> &&
                              !elementwise_policy<P, float> && !elementwise_policy<P, double>;

using banded_g = semfocus::with_global<semfocus::banded>;
using block_g = semfocus::with_global<semfocus::block_local>;
using mask_b = semfocus::explicit_mask<bool>;
using mask_u8 = semfocus::explicit_mask<std::uint8_t>;

// attention_policy for float and double.
static_assert(policy_for_both<semfocus::dense>);
static_assert(policy_for_both<semfocus::causal>);
static_assert(policy_for_both<semfocus::banded>);
static_assert(policy_for_both<semfocus::block_local>);
static_assert(policy_for_both<semfocus::strided>);
static_assert(policy_for_both<banded_g>);
static_assert(policy_for_both<block_g>);
static_assert(policy_for_both<mask_b>);
static_assert(policy_for_both<mask_u8>);
static_assert(policy_for_both<semfocus::random_k>);
static_assert(policy_for_both<semfocus::top_k>);
static_assert(policy_for_both<semfocus::bottom_k>);
static_assert(policy_for_both<semfocus::threshold>);
static_assert(policy_for_both<semfocus::absolute_threshold>);
static_assert(policy_for_both<user::same_parity>);
static_assert(policy_for_both<user::above_mean>);

// Locality: the concept and the declared constant agree.
static_assert(elementwise_for_both<semfocus::dense>);
static_assert(elementwise_for_both<semfocus::causal>);
static_assert(elementwise_for_both<semfocus::banded>);
static_assert(elementwise_for_both<semfocus::block_local>);
static_assert(elementwise_for_both<semfocus::strided>);
static_assert(elementwise_for_both<banded_g>);
static_assert(elementwise_for_both<block_g>);
static_assert(elementwise_for_both<mask_b>);
static_assert(elementwise_for_both<mask_u8>);
static_assert(elementwise_for_both<semfocus::random_k>);
static_assert(elementwise_for_both<semfocus::absolute_threshold>);
static_assert(elementwise_for_both<user::same_parity>);
static_assert(row_for_both<semfocus::top_k>);
static_assert(row_for_both<semfocus::bottom_k>);
static_assert(row_for_both<semfocus::threshold>);
static_assert(row_for_both<user::above_mean>);
static_assert(semfocus::top_k::locality_kind == locality::row);
static_assert(semfocus::dense::locality_kind == locality::elementwise);
static_assert(semfocus::absolute_threshold::locality_kind == locality::elementwise);

// Policies are small values.
static_assert(std::is_trivially_copyable_v<semfocus::top_k>);
static_assert(std::is_trivially_copyable_v<banded_g>);
static_assert(std::is_trivially_copyable_v<mask_b>);
static_assert(selection_policy<semfocus::causal>);

// fixed_mask: exactly the input-agnostic elementwise policies.
static_assert(fixed_mask<semfocus::dense>);
static_assert(fixed_mask<semfocus::causal>);
static_assert(fixed_mask<semfocus::banded>);
static_assert(fixed_mask<semfocus::block_local>);
static_assert(fixed_mask<semfocus::strided>);
static_assert(fixed_mask<banded_g>);
static_assert(fixed_mask<block_g>);
static_assert(fixed_mask<mask_b>);
static_assert(fixed_mask<mask_u8>);
static_assert(fixed_mask<semfocus::random_k>);
static_assert(fixed_mask<user::same_parity>);
static_assert(!fixed_mask<semfocus::absolute_threshold>);
static_assert(!fixed_mask<semfocus::top_k>);
static_assert(!fixed_mask<semfocus::bottom_k>);
static_assert(!fixed_mask<semfocus::threshold>);
static_assert(!fixed_mask<user::above_mean>);

// is_input_agnostic_v.
static_assert(is_input_agnostic_v<semfocus::dense>);
static_assert(is_input_agnostic_v<semfocus::causal>);
static_assert(is_input_agnostic_v<semfocus::banded>);
static_assert(is_input_agnostic_v<semfocus::block_local>);
static_assert(is_input_agnostic_v<semfocus::strided>);
static_assert(is_input_agnostic_v<banded_g>);
static_assert(is_input_agnostic_v<block_g>);
static_assert(is_input_agnostic_v<mask_b>);
static_assert(is_input_agnostic_v<semfocus::random_k>);
static_assert(is_input_agnostic_v<user::same_parity>);
static_assert(!is_input_agnostic_v<semfocus::absolute_threshold>);
static_assert(!is_input_agnostic_v<semfocus::top_k>);
static_assert(!is_input_agnostic_v<semfocus::bottom_k>);
static_assert(!is_input_agnostic_v<semfocus::threshold>);
static_assert(!is_input_agnostic_v<user::above_mean>);
static_assert(!is_input_agnostic_v<int>);

// row_statistic_t.
static_assert(
    std::is_same_v<row_statistic_t<semfocus::top_k, float>, semfocus::rank_cut<float, true>>);
static_assert(
    std::is_same_v<row_statistic_t<semfocus::top_k, double>, semfocus::rank_cut<double, true>>);
static_assert(
    std::is_same_v<row_statistic_t<semfocus::bottom_k, float>, semfocus::rank_cut<float, false>>);
static_assert(
    std::is_same_v<row_statistic_t<semfocus::bottom_k, double>, semfocus::rank_cut<double, false>>);
static_assert(
    std::is_same_v<row_statistic_t<semfocus::threshold, float>, semfocus::score_floor<float>>);
static_assert(
    std::is_same_v<row_statistic_t<semfocus::threshold, double>, semfocus::score_floor<double>>);
static_assert(std::is_same_v<row_statistic_t<user::above_mean, float>, user::mean_floor<float>>);
static_assert(std::is_same_v<row_statistic_t<user::above_mean, double>, user::mean_floor<double>>);
static_assert(std::is_same_v<row_statistic_t<semfocus::dense, float>, no_statistic>);
static_assert(std::is_same_v<row_statistic_t<semfocus::banded, double>, no_statistic>);
static_assert(std::is_same_v<row_statistic_t<banded_g, float>, no_statistic>);
static_assert(std::is_same_v<row_statistic_t<mask_b, float>, no_statistic>);
static_assert(std::is_same_v<row_statistic_t<semfocus::random_k, double>, no_statistic>);
static_assert(std::is_same_v<row_statistic_t<semfocus::absolute_threshold, float>, no_statistic>);
static_assert(std::is_same_v<row_statistic_t<user::same_parity, double>, no_statistic>);

// row_predicate on the statistic types.
static_assert(row_predicate<semfocus::rank_cut<float, true>, float>);
static_assert(row_predicate<semfocus::rank_cut<double, true>, double>);
static_assert(row_predicate<semfocus::rank_cut<float, false>, float>);
static_assert(row_predicate<semfocus::rank_cut<double, false>, double>);
static_assert(row_predicate<semfocus::score_floor<float>, float>);
static_assert(row_predicate<semfocus::score_floor<double>, double>);
static_assert(row_predicate<user::mean_floor<float>, float>);
static_assert(row_predicate<user::mean_floor<double>, double>);
static_assert(!row_predicate<no_statistic, float>);
static_assert(!row_predicate<int, double>);

// ---------------------------------------------------------------------------------------------
// Negatives: each struct breaks one clause of the contract.

// No locality_kind at all.
struct no_locality {
  template <class T>
  bool keep(const head_slice&, index_t, index_t, T) const noexcept {
    return true;
  }
};
static_assert(!selection_policy<no_locality>);
static_assert(!elementwise_policy<no_locality, float>);
static_assert(!attention_policy<no_locality, float>);
static_assert(!attention_policy<no_locality, double>);

// locality_kind is a mutable static, not a constant expression.
struct runtime_locality {
  static inline locality locality_kind = locality::elementwise;
  template <class T>
  bool keep(const head_slice&, index_t, index_t, T) const noexcept {
    return true;
  }
};
static_assert(!selection_policy<runtime_locality>);
static_assert(!attention_policy<runtime_locality, float>);

// locality_kind of a type that does not convert to locality.
struct int_locality {
  static constexpr int locality_kind = 0;
  template <class T>
  bool keep(const head_slice&, index_t, index_t, T) const noexcept {
    return true;
  }
};
static_assert(!selection_policy<int_locality>);
static_assert(!attention_policy<int_locality, double>);

// keep returns int, not bool.
struct keep_returns_int {
  static constexpr locality locality_kind = locality::elementwise;
  template <class T>
  int keep(const head_slice&, index_t, index_t, T) const noexcept {
    return 1;
  }
};
static_assert(selection_policy<keep_returns_int>);
static_assert(!elementwise_policy<keep_returns_int, float>);
static_assert(!attention_policy<keep_returns_int, float>);
static_assert(!attention_policy<keep_returns_int, double>);

// keep is not const.
struct keep_not_const {
  static constexpr locality locality_kind = locality::elementwise;
  template <class T>
  bool keep(const head_slice&, index_t, index_t, T) noexcept {
    return true;
  }
};
static_assert(!attention_policy<keep_not_const, float>);

// A row policy without row_statistic (it has an elementwise keep instead).
struct row_without_statistic {
  static constexpr locality locality_kind = locality::row;
  template <class T>
  bool keep(const head_slice&, index_t, index_t, T) const noexcept {
    return true;
  }
};
static_assert(selection_policy<row_without_statistic>);
static_assert(!row_policy<row_without_statistic, float>);
static_assert(!elementwise_policy<row_without_statistic, float>);
static_assert(!attention_policy<row_without_statistic, float>);
static_assert(!attention_policy<row_without_statistic, double>);

// A row policy whose statistic has no keep.
struct statistic_without_keep {
  float value;
};
struct row_statistic_no_keep {
  static constexpr locality locality_kind = locality::row;
  template <class T>
  statistic_without_keep row_statistic(const head_slice&, index_t, const T*) const noexcept {
    return {0.0f};
  }
};
static_assert(!row_predicate<statistic_without_keep, float>);
static_assert(!row_policy<row_statistic_no_keep, float>);
static_assert(!attention_policy<row_statistic_no_keep, float>);
static_assert(!attention_policy<row_statistic_no_keep, double>);

// A statistic without a default constructor (a record could not hold an array of them).
struct explicit_floor {
  explicit explicit_floor(double f) : floor(f) {}
  double floor;
  bool keep(index_t, double s) const noexcept { return s >= floor; }
};
struct row_explicit_floor {
  static constexpr locality locality_kind = locality::row;
  explicit_floor row_statistic(const head_slice&, index_t, const double*) const noexcept {
    return explicit_floor(0.0);
  }
};
static_assert(std::is_trivially_copyable_v<explicit_floor>);
static_assert(!row_predicate<explicit_floor, double>);
static_assert(!row_policy<row_explicit_floor, double>);

// A statistic whose keep returns int.
template <class T>
struct int_keep_statistic {
  T value;
  int keep(index_t, T s) const noexcept { return s >= value ? 1 : 0; }
};
struct row_statistic_int_keep {
  static constexpr locality locality_kind = locality::row;
  template <class T>
  int_keep_statistic<T> row_statistic(const head_slice&, index_t, const T*) const noexcept {
    return {T(0)};
  }
};
static_assert(!row_predicate<int_keep_statistic<float>, float>);
static_assert(!attention_policy<row_statistic_int_keep, float>);

// Not trivially copyable: holds a std::vector.
struct holds_vector {
  [[maybe_unused]] static constexpr locality locality_kind = locality::elementwise;
  std::vector<int> allowed;
  template <class T>
  bool keep(const head_slice&, index_t, index_t j, T) const noexcept {
    return j < static_cast<index_t>(allowed.size());
  }
};
static_assert(std::copyable<holds_vector>);
static_assert(!std::is_trivially_copyable_v<holds_vector>);
static_assert(!selection_policy<holds_vector>);
static_assert(!attention_policy<holds_vector, float>);
static_assert(!attention_policy<holds_vector, double>);

// Not copyable at all.
struct move_only {
  [[maybe_unused]] static constexpr locality locality_kind = locality::elementwise;
  move_only() = default;
  move_only(const move_only&) = delete;
  move_only(move_only&&) = default;
  move_only& operator=(const move_only&) = delete;
  move_only& operator=(move_only&&) = default;
  template <class T>
  bool keep(const head_slice&, index_t, index_t, T) const noexcept {
    return true;
  }
};
static_assert(!selection_policy<move_only>);
static_assert(!attention_policy<move_only, float>);

// An elementwise policy tagged locality::row.
struct elementwise_tagged_row {
  static constexpr locality locality_kind = locality::row;
  [[maybe_unused]] static constexpr bool input_agnostic = true;
  template <class T>
  bool keep(const head_slice&, index_t, index_t, T) const noexcept {
    return true;
  }
};
static_assert(!elementwise_policy<elementwise_tagged_row, float>);
static_assert(!row_policy<elementwise_tagged_row, float>);
static_assert(!attention_policy<elementwise_tagged_row, float>);
static_assert(!fixed_mask<elementwise_tagged_row>);

// A row policy tagged locality::elementwise.
struct row_tagged_elementwise {
  static constexpr locality locality_kind = locality::elementwise;
  template <class T>
  semfocus::score_floor<T> row_statistic(const head_slice&, index_t, const T*) const noexcept {
    return {T(0)};
  }
};
static_assert(!row_policy<row_tagged_elementwise, float>);
static_assert(!attention_policy<row_tagged_elementwise, double>);

// A row policy whose statistic is not trivially copyable.
struct heavy_statistic {
  std::vector<float> kept;
  bool keep(index_t j, float) const { return j < static_cast<index_t>(kept.size()); }
};
struct row_heavy_statistic {
  static constexpr locality locality_kind = locality::row;
  heavy_statistic row_statistic(const head_slice&, index_t, const float*) const { return {}; }
};
static_assert(!row_predicate<heavy_statistic, float>);
static_assert(selection_policy<row_heavy_statistic>);
static_assert(!row_policy<row_heavy_statistic, float>);
static_assert(!attention_policy<row_heavy_statistic, float>);

// An elementwise policy that only accepts float scores is a policy for float, not for double
// (no silent narrowing of the score).
struct float_only {
  static constexpr locality locality_kind = locality::elementwise;
  bool keep(const head_slice&, index_t, index_t, float) const noexcept { return true; }
  bool keep(const head_slice&, index_t, index_t, double) const = delete;
};
static_assert(attention_policy<float_only, float>);
static_assert(!attention_policy<float_only, double>);

// input_agnostic = false is not a fixed mask even though keep ignores s.
struct declared_not_agnostic {
  static constexpr locality locality_kind = locality::elementwise;
  static constexpr bool input_agnostic = false;
  template <class T>
  bool keep(const head_slice&, index_t, index_t, T) const noexcept {
    return true;
  }
};
static_assert(attention_policy<declared_not_agnostic, float>);
static_assert(!is_input_agnostic_v<declared_not_agnostic>);
static_assert(!fixed_mask<declared_not_agnostic>);

// ---------------------------------------------------------------------------------------------
// with_global accepts only fixed masks.

template <class M>
concept wrappable = requires {
  typename semfocus::with_global<M>;
};

template <class M>
concept global_tokens_callable = requires(const M& m) {
  semfocus::global_tokens(m, index_t{1});
};

static_assert(wrappable<semfocus::banded>);
static_assert(wrappable<semfocus::block_local>);
static_assert(wrappable<semfocus::dense>);
static_assert(wrappable<user::same_parity>);
static_assert(global_tokens_callable<semfocus::banded>);
static_assert(global_tokens_callable<semfocus::block_local>);
static_assert(!wrappable<semfocus::top_k>);
static_assert(!wrappable<semfocus::bottom_k>);
static_assert(!wrappable<semfocus::threshold>);
static_assert(!wrappable<semfocus::absolute_threshold>);
static_assert(!wrappable<user::above_mean>);
static_assert(!wrappable<declared_not_agnostic>);
static_assert(!wrappable<elementwise_tagged_row>);
static_assert(!global_tokens_callable<semfocus::top_k>);
static_assert(!global_tokens_callable<semfocus::threshold>);
static_assert(!global_tokens_callable<semfocus::absolute_threshold>);
static_assert(std::is_same_v<decltype(semfocus::global_tokens(std::declval<semfocus::banded>(), 1)),
                             banded_g>);

// is_kept is constrained on attention_policy.
template <class P, class T>
concept is_kept_callable = requires(const P& p, const head_slice& hs, T s,
                                    const row_statistic_t<P, T>& st) {
  { semfocus::is_kept(p, hs, index_t{0}, index_t{0}, s, st) } -> std::same_as<bool>;
};
static_assert(is_kept_callable<semfocus::banded, float>);
static_assert(is_kept_callable<semfocus::top_k, double>);
static_assert(is_kept_callable<user::above_mean, float>);
static_assert(!is_kept_callable<keep_returns_int, float>);
static_assert(!is_kept_callable<holds_vector, double>);

}  // namespace

TEST_CASE("concepts: the policy contract is checked at compile time") {
  // Everything above is static_assert; this test registers the file and checks that the
  // concepts agree at run time with the constants they read.
  CHECK(semfocus::top_k::locality_kind == locality::row);
  CHECK(semfocus::banded::locality_kind == locality::elementwise);
  CHECK(is_input_agnostic_v<semfocus::random_k>);
  CHECK_FALSE(is_input_agnostic_v<semfocus::threshold>);
  CHECK(attention_policy<user::above_mean, float>);
  CHECK_FALSE(attention_policy<holds_vector, float>);
}
