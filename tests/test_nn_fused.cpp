// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <semfocus/nn/nn.hpp>

// The encoder block runs its element-wise and row-local steps (dropout, the activation, the
// residual sums, the MLP's LayerNorm and both LayerNorms' backward) in the epilogues of the GEMM
// passes before them. It must give the same bits as its layers called one pass at a time, in
// the order of the block's formula, with the same dropout masks: forward output, dx and every
// parameter gradient.

namespace {

using semfocus::index_t;
namespace nn = semfocus::nn;

template <class T>
bool same_bits(const nn::matrix<T>& a, const nn::matrix<T>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.size()) * sizeof(T)) == 0;
}

template <class Policy, class Exec, class T>
void check_fused_block(const Policy& policy, const Exec& exec, nn::activation act, double p) {
  nn::model_config c;
  c.d = 32;
  c.heads = 2;
  c.d_mlp = 48;
  c.activation = act;
  c.dropout = p;
  using block = nn::encoder_block<Policy, Exec, T>;
  block fused(c, c.ln_eps, policy, exec, "b"), ref(c, c.ln_eps, policy, exec, "b");
  nn::rng init_a(3), init_b(3);
  fused.reset_parameters(init_a);
  ref.reset_parameters(init_b);

  const index_t batch = 15, n = 20;  // 300 rows: three row chunks, the last partial
  nn::matrix<T> x(batch * n, c.d), dy(batch * n, c.d);
  nn::rng data(9);
  nn::fill_uniform(x, -1.0, 1.0, data);
  nn::fill_uniform(dy, -1.0, 1.0, data);

  nn::rng masks_a(17), masks_b(17);
  const nn::matrix<T> y = fused.forward(x, batch, &masks_a);
  const nn::matrix<T> dx = fused.backward(dy);

  // h = x + D(MHA(LN_attn(x))); y = h + D(MLP(LN_mlp(h))), MLP = fc2(act(D(fc1(.)))).
  nn::matrix<T> a = ref.attn.forward(ref.ln_attn.forward(x), batch), h;
  ref.drop_attn.forward(a, &masks_b);
  nn::matrix<T> hidden = ref.mlp.fc1.forward(ref.ln_mlp.forward_sum(x, a, h));
  ref.mlp.drop.forward(hidden, &masks_b);
  nn::matrix<T> m = ref.mlp.fc2.forward(ref.mlp.act.forward(std::move(hidden)));
  ref.drop_mlp.forward(m, &masks_b);
  const nn::matrix<T> y_ref = h + m;
  CHECK(same_bits(y, y_ref));
  CHECK(masks_a.state() == masks_b.state());  // the same three draws

  nn::matrix<T> g = dy;
  ref.drop_mlp.backward(g);
  nn::matrix<T> g_hidden = ref.mlp.act.backward(ref.mlp.fc2.backward(g));
  ref.mlp.drop.backward(g_hidden);
  const nn::matrix<T> dh = ref.ln_mlp.backward_sum(ref.mlp.fc1.backward(g_hidden), dy);
  nn::matrix<T> g_attn = dh;
  ref.drop_attn.backward(g_attn);
  const nn::matrix<T> dx_ref = ref.ln_attn.backward_sum(ref.attn.backward(g_attn), dh);
  CHECK(same_bits(dx, dx_ref));

  nn::parameter_list<T> pf, pr;
  fused.append_parameters(pf);
  ref.append_parameters(pr);
  REQUIRE(pf.size() == pr.size());
  for (std::size_t i = 0; i < pf.size(); ++i) {
    INFO(pf[i]->name);
    CHECK(pf[i]->grad.cwiseAbs().maxCoeff() > 0);  // the comparison is not of zeros
    CHECK(same_bits(pf[i]->grad, pr[i]->grad));
  }

  // A dy of the wrong shape is refused by name.
  CHECK_THROWS_WITH_AS(fused.backward(nn::matrix<T>(batch * n, c.d + 1)),
                       doctest::Contains("dy must be"), semfocus::invalid_argument);
}

}  // namespace

TEST_CASE("nn: the fused encoder block equals its layers one pass at a time") {
  for (const double p : {0.0, 0.2}) {
    INFO("dropout " << p);
    check_fused_block<semfocus::dense, semfocus::exec::reference_t, double>(
        semfocus::dense{}, semfocus::exec::reference, nn::activation::gelu, p);
#if defined(SEMFOCUS_HAS_XSIMD)
    for (const int threads : {1, 2}) {
      INFO("threads " << threads);
      const auto ex = semfocus::exec::simd.with_threads(threads);
      check_fused_block<semfocus::dense, semfocus::exec::simd_t, float>(semfocus::dense{}, ex,
                                                                        nn::activation::relu, p);
      check_fused_block<semfocus::top_k, semfocus::exec::simd_t, float>(semfocus::top_k(5), ex,
                                                                        nn::activation::mish, p);
    }
#endif
  }
}
