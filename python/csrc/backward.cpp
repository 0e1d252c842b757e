// SPDX-License-Identifier: MIT
#include <cstring>
#include <type_traits>

#include "common.hpp"
#include "ops.hpp"

namespace semfocus_torch {

namespace {

/// Rebuilds the forward record from the tensors of forward_result; the library's backward then
/// checks it against the problem (shape, policy, selection consistency).
template <class Record>
void fill_record(Record& rec, const at::Tensor& lse, const at::Tensor& stats,
                 const at::Tensor& offsets, const at::Tensor& selection) {
  using stat = typename decltype(rec.stats)::value_type;
  const auto rows = static_cast<std::int64_t>(rec.lse.size());
  const std::int64_t stat_bytes =
      Record::has_statistics ? rows * static_cast<std::int64_t>(sizeof(stat)) : 0;
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

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> backward_cpu(
    const at::Tensor& d_out_in, const at::Tensor& q_in, const at::Tensor& k_in,
    const at::Tensor& v_in, const at::Tensor& out_in, c10::string_view policy, at::IntArrayRef ints,
    at::ArrayRef<double> floats, const std::optional<at::Tensor>& mask, std::optional<double> scale,
    const at::Tensor& lse, const at::Tensor& stats, const at::Tensor& selection_offsets,
    const at::Tensor& selection) {
  const at::Tensor q = rows_contiguous(q_in, "q"), k = rows_contiguous(k_in, "k"),
                   v = rows_contiguous(v_in, "v"), out = rows_contiguous(out_in, "out"),
                   d_out = rows_contiguous(d_out_in, "d_out");
  for (const at::Tensor* t : {&k, &v, &out, &d_out})
    TORCH_CHECK_VALUE(t->scalar_type() == q.scalar_type(),
                      "semfocus_torch: backward's tensors must have q's dtype ", q.scalar_type(),
                      ", got ", t->scalar_type());
  const policy_spec spec = make_spec(policy, ints, floats, mask);
  at::Tensor dq = empty_like_layout(q, q.size(3)), dk = empty_like_layout(k, k.size(3)),
             dv = empty_like_layout(v, v.size(3));
  translating_errors([&] {
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "semfocus_torch::backward", [&] {
      visit_policy(spec, [&](const auto& p) {
        using P = std::remove_cvref_t<decltype(p)>;
        const semfocus::attention_shape s{q.size(0), q.size(1), q.size(2),
                                          k.size(2), q.size(3), v.size(3)};
        const semfocus::attention_options options{scale};
        semfocus::forward_record_t<P, scalar_t> rec;
        rec.reset(p, s, semfocus::detail::resolve_scale("semfocus_torch::backward", options, s.d));
        fill_record(rec, lse, stats, selection_offsets, selection);
        semfocus::backward(executor(), p, view_of<const scalar_t>(q), view_of<const scalar_t>(k),
                           view_of<const scalar_t>(v), view_of<const scalar_t>(out),
                           view_of<const scalar_t>(d_out), rec, view_of<scalar_t>(dq),
                           view_of<scalar_t>(dk), view_of<scalar_t>(dv));
      });
    });
  });
  return {dq, dk, dv};
}

}  // namespace semfocus_torch
