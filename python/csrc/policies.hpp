// SPDX-License-Identifier: MIT
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <semfocus/semfocus.hpp>

// The Python policies (semfocus_torch/policies.py) cross into C++ as (name, ints, floats, mask):
// one spelling per C++ policy, decoded here into the library's own policy value. Nothing else is
// interpreted on this side.
namespace semfocus_torch {

namespace sf = semfocus;

/// \brief What a Python policy sends: its C++ name ("with_global:<inner>" for global tokens over
/// a fixed mask, ints[0] = the number of global tokens, then the inner policy's ints), its
/// integer and real parameters in declaration order, and the mask of explicit_mask.
struct policy_spec {
  std::string name;
  std::vector<std::int64_t> ints;
  std::vector<double> floats;
  sf::tensor_view<const bool> mask{};
};

/// \brief The [batch, heads, seq, dim] view of a 4-D tensor whose last axis has stride 1 and whose
/// dtype stores T (float, double, bool; __half for float16, __nv_bfloat16 for bfloat16): both
/// checked by the caller.
template <class T>
sf::tensor_view<T> view_of(const at::Tensor& t) {
  using U = std::remove_const_t<T>;
  TORCH_INTERNAL_ASSERT(t.element_size() == sizeof(U), "semfocus_torch: view_of: element size");
  return {static_cast<U*>(t.data_ptr()),
          sf::tensor_shape{t.size(0), t.size(1), t.size(2), t.size(3)},
          sf::tensor_strides{t.stride(0), t.stride(1), t.stride(2)}};
}

namespace detail {

inline void require_params(const policy_spec& p, std::size_t ints, std::size_t floats,
                           std::size_t int_offset = 0) {
  TORCH_CHECK_VALUE(p.ints.size() == ints + int_offset && p.floats.size() == floats,
                    "semfocus_torch: policy ", p.name, " takes ", ints, " integer and ", floats,
                    " real parameters, got ", p.ints.size() - int_offset, " and ", p.floats.size());
}

/// Calls f with the fixed mask named `name` (ints from `off`); false if the name is not one.
template <class F>
bool visit_fixed_mask(const std::string& name, const policy_spec& p, std::size_t off, F&& f) {
  const auto i = [&](std::size_t x) { return p.ints[off + x]; };
  if (name == "dense") return require_params(p, 0, 0, off), f(sf::dense{}), true;
  if (name == "causal") return require_params(p, 0, 0, off), f(sf::causal{}), true;
  if (name == "banded") return require_params(p, 1, 0, off), f(sf::banded(i(0))), true;
  if (name == "block_local") return require_params(p, 1, 0, off), f(sf::block_local(i(0))), true;
  if (name == "strided") return require_params(p, 2, 0, off), f(sf::strided(i(0), i(1))), true;
  if (name == "explicit_mask")
    return require_params(p, 0, 0, off), f(sf::explicit_mask<bool>(p.mask)), true;
  return false;
}

}  // namespace detail

/// \brief Calls f(policy) with the C++ policy that `p` names. Errors (unknown name, wrong number
/// of parameters, a value the policy's constructor rejects) are ValueErrors in Python.
template <class F>
void visit_policy(const policy_spec& p, F&& f) {
  namespace d = detail;
  const std::string& n = p.name;
  if (d::visit_fixed_mask(n, p, 0, f)) return;
  if (n.rfind("with_global:", 0) == 0) {
    TORCH_CHECK_VALUE(!p.ints.empty(), "semfocus_torch: with_global needs its token count");
    const std::int64_t g = p.ints[0];
    const bool known = d::visit_fixed_mask(n.substr(12), p, 1, [&](const auto& inner) {
      f(sf::with_global<std::remove_cvref_t<decltype(inner)>>(inner, g));
    });
    TORCH_CHECK_VALUE(known,
                      "semfocus_torch: with_global takes a fixed mask (dense, causal, "
                      "banded, block_local, strided, explicit_mask), got ",
                      n.substr(12));
    return;
  }
  if (n == "top_k") return d::require_params(p, 1, 0), f(sf::top_k(p.ints[0]));
  if (n == "bottom_k") return d::require_params(p, 1, 0), f(sf::bottom_k(p.ints[0]));
  if (n == "random_k")
    return d::require_params(p, 2, 0),
           f(sf::random_k(p.ints[0], static_cast<std::uint64_t>(p.ints[1])));
  if (n == "threshold") return d::require_params(p, 0, 1), f(sf::threshold(p.floats[0]));
  if (n == "absolute_threshold")
    return d::require_params(p, 0, 1), f(sf::absolute_threshold(p.floats[0]));
  TORCH_CHECK_VALUE(false, "semfocus_torch: unknown policy '", n, "'");
}

}  // namespace semfocus_torch
