// SPDX-License-Identifier: MIT
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

#include "policies.hpp"

// Argument checks, tensor plumbing and the record's tensors, shared by the CPU operators (g++) and
// the CUDA ones (nvcc): nothing here depends on the backend.
namespace semfocus_torch {

/// \brief An operator's tensor argument and its name in error messages.
using named_tensor = std::pair<const char*, const at::Tensor*>;

/// \brief The operator's tensor arguments (the first is q), checked, with rows contiguous: each is
/// the argument itself, or a contiguous copy when its last axis is strided. ValueError naming the
/// argument unless each is on q's device, 4-D, and of q's dtype, which `accepts` must take
/// (`expected` spells what it takes).
template <std::size_t N, class Accepts>
std::array<at::Tensor, N> checked_tensors(const std::array<named_tensor, N>& args,
                                          Accepts&& accepts, const char* expected) {
  const at::Tensor& q = *args[0].second;
  std::array<at::Tensor, N> rows;
  for (std::size_t x = 0; x < N; ++x) {
    const auto& [arg, t] = args[x];
    TORCH_CHECK_VALUE(t->device() == q.device(), "semfocus_torch: ", arg, " must be on q's device ",
                      q.device(), ", got ", t->device());
    TORCH_CHECK_VALUE(t->dim() == 4, "semfocus_torch: ", arg,
                      " must be 4-D [batch, heads, seq, dim], got ", t->dim(), "-D");
    TORCH_CHECK_VALUE(accepts(t->scalar_type()), "semfocus_torch: ", arg, " must be ", expected,
                      ", got ", t->scalar_type());
    TORCH_CHECK_VALUE(t->scalar_type() == q.scalar_type(), "semfocus_torch: ", arg,
                      " must have q's dtype ", q.scalar_type(), " (one dtype), got ",
                      t->scalar_type());
    rows[x] = t->stride(3) == 1 || t->size(3) <= 1 ? *t : t->contiguous();
  }
  return rows;
}

/// \brief An uninitialised [ref.size(0..2), last] tensor whose outer axes are laid out in the order
/// of ref's strides (so [batch, seq, heads, dim] storage gives the same kind of result), rows
/// contiguous.
inline at::Tensor empty_like_layout(const at::Tensor& ref, std::int64_t last) {
  std::array<std::int64_t, 3> order{0, 1, 2};
  std::stable_sort(order.begin(), order.end(),
                   [&](std::int64_t a, std::int64_t b) { return ref.stride(a) > ref.stride(b); });
  const at::Tensor t =
      at::empty({ref.size(order[0]), ref.size(order[1]), ref.size(order[2]), last}, ref.options());
  std::array<std::int64_t, 4> inverse{0, 0, 0, 3};
  for (std::int64_t x = 0; x < 3; ++x) inverse[std::size_t(order[std::size_t(x)])] = x;
  return t.permute(inverse);
}

/// \brief The spec of a Python policy; the mask must be a 4-D bool tensor on `device` (q's).
inline policy_spec make_spec(c10::string_view policy, at::IntArrayRef ints,
                             at::ArrayRef<double> floats, const std::optional<at::Tensor>& mask,
                             const at::Device& device) {
  policy_spec p{std::string(policy), ints.vec(), floats.vec(), {}};
  if (mask) {
    const at::Tensor& m = *mask;
    TORCH_CHECK_VALUE(m.scalar_type() == at::kBool && m.device() == device && m.dim() == 4,
                      "semfocus_torch: mask must be a 4-D bool tensor [1 or batch, 1 or heads, "
                      "n_q, n_k] on q's device ",
                      device, ", got ", m.scalar_type(), " ", m.dim(), "-D on ", m.device());
    TORCH_CHECK_VALUE(m.stride(3) == 1 || m.size(3) <= 1,
                      "semfocus_torch: mask must have stride 1 along keys");
    p.mask = view_of<const bool>(m);
  }
  return p;
}

/// \brief Runs f, turning the library's invalid_argument into a ValueError with its message.
template <class F>
decltype(auto) translating_errors(F&& f) {
  try {
    return f();
  } catch (const semfocus::invalid_argument& e) {
    C10_THROW_ERROR(ValueError, e.what());
  }
}

/// \brief The record's arrays copied into CPU tensors (lse, stats, offsets, selection; see
/// forward_result in ops.hpp). They stay on the CPU for every device: the library's record is a
/// host object. O(rows + kept).
template <class Record>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> record_tensors(const Record& rec) {
  using stat = typename decltype(rec.stats)::value_type;
  static_assert(std::is_trivially_copyable_v<stat>);
  const auto n = [](std::size_t x) { return static_cast<std::int64_t>(x); };
  at::Tensor lse = at::empty({n(rec.lse.size())}, at::kDouble);
  std::memcpy(lse.data_ptr<double>(), rec.lse.data(), rec.lse.size() * sizeof(double));
  const std::size_t stat_bytes = Record::has_statistics ? rec.stats.size() * sizeof(stat) : 0;
  at::Tensor stats = at::empty({n(stat_bytes)}, at::kByte);
  if (stat_bytes) std::memcpy(stats.data_ptr<std::uint8_t>(), rec.stats.data(), stat_bytes);
  at::Tensor offsets = at::empty({n(rec.selection_offsets.size())}, at::kLong);
  std::memcpy(offsets.data_ptr<std::int64_t>(), rec.selection_offsets.data(),
              rec.selection_offsets.size() * sizeof(std::int64_t));
  at::Tensor selection = at::empty({n(rec.selection.size())}, at::kInt);
  std::memcpy(selection.data_ptr<std::int32_t>(), rec.selection.data(),
              rec.selection.size() * sizeof(std::uint32_t));
  return {lse, stats, offsets, selection};
}

/// \brief Refills a record (already reset to the problem) from the tensors of record_tensors; the
/// library's backward then checks it against the problem (shape, policy, selection consistency).
/// ValueError for tensors of the wrong dtype, size or device. O(rows + kept).
template <class Record>
void fill_record(Record& rec, const at::Tensor& lse, const at::Tensor& stats,
                 const at::Tensor& offsets, const at::Tensor& selection) {
  using stat = typename decltype(rec.stats)::value_type;
  const auto rows = static_cast<std::int64_t>(rec.lse.size());
  const std::int64_t stat_bytes =
      Record::has_statistics ? rows * static_cast<std::int64_t>(sizeof(stat)) : 0;
  for (const auto& [arg, t] :
       {named_tensor{"lse", &lse}, named_tensor{"stats", &stats},
        named_tensor{"selection_offsets", &offsets}, named_tensor{"selection", &selection}})
    TORCH_CHECK_VALUE(t->is_cpu(), "semfocus_torch: ", arg,
                      " must be a CPU tensor (from forward), got one on ", t->device());
  TORCH_CHECK_VALUE(lse.scalar_type() == at::kDouble && lse.numel() == rows,
                    "semfocus_torch: lse must be float64 with ", rows, " entries (from forward)");
  TORCH_CHECK_VALUE(stats.scalar_type() == at::kByte && stats.numel() == stat_bytes,
                    "semfocus_torch: stats must be uint8 with ", stat_bytes,
                    " entries for this policy (from forward)");
  TORCH_CHECK_VALUE(
      offsets.scalar_type() == at::kLong && (offsets.numel() == 0 || offsets.numel() == rows + 1),
      "semfocus_torch: selection_offsets must be int64 with 0 or ", rows + 1,
      " entries (from forward)");
  TORCH_CHECK_VALUE(selection.scalar_type() == at::kInt,
                    "semfocus_torch: selection must be int32 (from forward)");
  const at::Tensor l = lse.contiguous(), s = stats.contiguous(), o = offsets.contiguous(),
                   x = selection.contiguous();
  std::memcpy(rec.lse.data(), l.data_ptr<double>(), std::size_t(rows) * sizeof(double));
  if (stat_bytes)
    std::memcpy(rec.stats.data(), s.data_ptr<std::uint8_t>(), std::size_t(stat_bytes));
  rec.selection_offsets.assign(o.data_ptr<std::int64_t>(), o.data_ptr<std::int64_t>() + o.numel());
  rec.selection.resize(std::size_t(x.numel()));
  std::memcpy(rec.selection.data(), x.data_ptr<std::int32_t>(),
              std::size_t(x.numel()) * sizeof(std::uint32_t));
}

}  // namespace semfocus_torch
