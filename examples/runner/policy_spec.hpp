// SPDX-License-Identifier: MIT
#pragma once

// The examples' policy specs (train --policy, compare --policies, the meta line of a saved
// checkpoint): full | topk:K | banded:K | block:K | threshold:TAU | banded:K+gG | block:K+gG,
// K, G >= 1 integers, TAU >= 0 finite. Standard library only, so compare does not compile the
// library; examples/runner/training.hpp turns a spec into a policy.

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

namespace semfocus::runner {

/// \brief A parsed spec: kind is "full", "topk", "banded", "block" or "threshold".
struct policy_spec {
  std::string kind;
  std::int64_t k = 0;        ///< K of topk, banded and block
  std::int64_t globals = 0;  ///< G of banded:K+gG and block:K+gG, otherwise 0
  double tau = 0;            ///< TAU of threshold
};

/// \brief The spec's grammar, spelled out for error messages.
inline constexpr const char* policy_spec_grammar =
    "full, topk:K, banded:K, block:K, threshold:TAU, banded:K+gG or block:K+gG (K, G >= 1 "
    "integers, TAU >= 0)";

/// \brief An integer >= lo written in full (digits only, at most 18), or nothing.
inline std::optional<std::int64_t> parse_integer(const std::string& s, std::int64_t lo) {
  if (s.empty() || s.size() > 18 || s.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  const std::int64_t v = std::stoll(s);
  return v >= lo ? std::optional<std::int64_t>(v) : std::nullopt;
}

/// \brief A finite number written in full, >= lo (or > lo when open), or nothing.
inline std::optional<double> parse_number(const std::string& s, double lo, bool open = false) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (used != s.size() || !std::isfinite(v) || v < lo || (open && v == lo)) return std::nullopt;
  return v;
}

/// \brief Parses `spec` ("dense" is accepted for "full"); nothing when it is not of the grammar.
inline std::optional<policy_spec> parse_policy_spec(const std::string& spec) {
  if (spec == "full" || spec == "dense") return policy_spec{"full"};
  const std::size_t colon = spec.find(':');
  if (colon == std::string::npos) return std::nullopt;
  policy_spec p{spec.substr(0, colon)};
  const std::string rest = spec.substr(colon + 1);
  if (p.kind == "threshold") {
    const auto tau = parse_number(rest, 0);
    if (!tau) return std::nullopt;
    p.tau = *tau;
    return p;
  }
  if (p.kind != "topk" && p.kind != "banded" && p.kind != "block") return std::nullopt;
  const std::size_t plus = rest.find("+g");
  const auto k = parse_integer(rest.substr(0, plus), 1);
  if (!k) return std::nullopt;
  p.k = *k;
  if (plus == std::string::npos) return p;
  const auto g = parse_integer(rest.substr(plus + 2), 1);
  if (!g || p.kind == "topk") return std::nullopt;
  p.globals = *g;
  return p;
}

}  // namespace semfocus::runner
