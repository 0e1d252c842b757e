// SPDX-License-Identifier: MIT
#include <cstring>
#include <type_traits>

#include "common.hpp"
#include "ops.hpp"

namespace semfocus_torch {

namespace {

/// The record's vectors copied into tensors (see forward_result).
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

}  // namespace

forward_result forward_cpu(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                           c10::string_view policy, at::IntArrayRef ints,
                           at::ArrayRef<double> floats, const std::optional<at::Tensor>& mask,
                           std::optional<double> scale) {
  const at::Tensor q = rows_contiguous(q_in, "q"), k = rows_contiguous(k_in, "k"),
                   v = rows_contiguous(v_in, "v");
  TORCH_CHECK_VALUE(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
                    "semfocus_torch: q, k and v must have one dtype, got ", q.scalar_type(), ", ",
                    k.scalar_type(), " and ", v.scalar_type());
  const policy_spec spec = make_spec(policy, ints, floats, mask);
  at::Tensor out = empty_like_layout(q, v.size(3));
  forward_result result;
  translating_errors([&] {
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "semfocus_torch::forward", [&] {
      visit_policy(spec, [&](const auto& p) {
        semfocus::forward_record_t<std::remove_cvref_t<decltype(p)>, scalar_t> rec;
        semfocus::forward(executor(), p, view_of<const scalar_t>(q), view_of<const scalar_t>(k),
                          view_of<const scalar_t>(v), view_of<scalar_t>(out), rec,
                          semfocus::attention_options{scale});
        const auto [lse, stats, offsets, selection] = record_tensors(rec);
        result = {out, lse, stats, offsets, selection};
      });
    });
  });
  return result;
}

}  // namespace semfocus_torch
