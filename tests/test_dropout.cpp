// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <semfocus/nn/nn.hpp>

#include "support/nn_fd.hpp"

// Dropout: the mask's statistics and determinism, evaluation as the identity, its backward, and
// the whole model's gradient with dropout on (the masks held fixed by restoring the generator)
// against central finite differences in double.

namespace {

using semfocus::index_t;
namespace nn = semfocus::nn;
using md = nn::matrix<double>;

md filled(index_t rows, index_t cols, std::uint64_t seed) {
  md m(rows, cols);
  nn::rng gen(seed);
  nn::fill_uniform(m, 0.5, 1.5, gen);  // no zeros: a dropped element is recognisable
  return m;
}

}  // namespace

TEST_CASE("dropout: mask statistics, scaling, determinism, evaluation and backward") {
  const double p = 0.25;
  nn::dropout<double> drop(p);
  const md x = filled(300, 301, 1);
  md y = x;
  nn::rng gen(7);
  drop.forward(y, &gen);
  CHECK(drop.active());
  index_t kept = 0;
  for (index_t i = 0; i < x.size(); ++i) {
    if (y.data()[i] == 0) continue;
    ++kept;
    CHECK(y.data()[i] == doctest::Approx(x.data()[i] / (1 - p)).epsilon(1e-15));
  }
  // The mask is the documented one: element i kept iff word(key, i) < floor(0.75 2^32), with
  // key the generator's next draw.
  nn::rng key_gen(7);
  const std::uint64_t key = key_gen.bits();
  for (index_t i = 0; i < x.size(); ++i)
    CHECK((y.data()[i] != 0) == (nn::dropout<double>::word(key, i) < 3221225472u));
  // 90300 Bernoulli(0.75) draws: standard deviation 130, so 0.75 +- 0.005 is 3.5 sigma.
  CHECK(std::abs(double(kept) / double(x.size()) - (1 - p)) < 0.005);

  // The same generator state gives the same mask; the next call another one.
  md again = x, next = x;
  nn::rng same(7);
  nn::dropout<double> other(p);
  other.forward(again, &same);
  CHECK(again == y);
  other.forward(next, &same);
  CHECK(next != y);

  // backward multiplies by the same m / (1 - p); the copying form leaves dy alone.
  md dy = md::Ones(x.rows(), x.cols()), scratch;
  const md& dx = drop.backward(dy, scratch);
  CHECK(&dx == &scratch);
  for (index_t i = 0; i < x.size(); ++i)
    CHECK(dx.data()[i] == (y.data()[i] == 0 ? 0.0 : 1 / (1 - p)));
  CHECK(dy == md::Ones(x.rows(), x.cols()));
  md wrong = md::Ones(2, 3);
  CHECK_THROWS_AS(drop.backward(wrong), semfocus::invalid_argument);

  // Evaluation (no generator) and p = 0 are the identity, draw nothing, and pass dy through.
  const std::string state = gen.state();
  md e = x;
  drop.forward(e, nullptr);
  CHECK(e == x);
  CHECK_FALSE(drop.active());
  CHECK(&drop.backward(dy, scratch) == &dy);
  nn::dropout<double> none(0.0);
  none.forward(e, &gen);
  CHECK(e == x);
  CHECK(gen.state() == state);

  CHECK_THROWS_WITH_AS(nn::dropout<double>(1.0), doctest::Contains("p must be in [0, 1), got 1"),
                       semfocus::invalid_argument);
  CHECK_THROWS_AS(nn::dropout<double>(-0.1), semfocus::invalid_argument);
}

TEST_CASE("dropout: a row offset gives the rows of a larger input's mask") {
  const md big = filled(50, 7, 2);
  md whole = big;
  nn::rng gen_whole(5), gen_part(5);
  nn::dropout<double> a(0.4), b(0.4);
  a.forward(whole, &gen_whole);
  b.set_row_offset(13);
  md part = big.middleRows(13, 20);
  b.forward(part, &gen_part);
  CHECK(part == whole.middleRows(13, 20));
  CHECK(part != big.middleRows(13, 20));  // something was dropped
  md dy = md::Ones(20, 7);
  b.backward(dy);  // backward uses the same offset
  for (index_t i = 0; i < dy.size(); ++i) CHECK((dy.data()[i] == 0) == (part.data()[i] == 0));
  CHECK_THROWS_WITH_AS(b.set_row_offset(-1), doctest::Contains("o must be >= 0, got -1"),
                       semfocus::invalid_argument);
}

TEST_CASE("dropout: rng state round-trips") {
  nn::rng a(3);
  a.bits();
  nn::rng b(99);
  b.set_state(a.state());
  for (int i = 0; i < 5; ++i) CHECK(a.bits() == b.bits());
  CHECK_THROWS_WITH_AS(b.set_state("12 x"), doctest::Contains("not an engine state"),
                       semfocus::invalid_argument);
  CHECK(a.bits() == b.bits());  // unchanged by the failed set_state
}

TEST_CASE("dropout: the model's gradient with dropout on, its modes and its config") {
  nn::model_config c;
  c.vocab = 5;
  c.classes = 3;
  c.blocks = 2;
  c.d = 8;
  c.heads = 2;
  c.d_mlp = 8;
  c.activation = nn::activation::gelu;
  c.dropout = 0.3;
  c.seed = 4;
  nn::encoder_classifier<semfocus::dense, semfocus::exec::reference_t, double> m(c,
                                                                                 semfocus::dense{});
  const index_t batch = 3, n = 6;
  nn::rng gen(11);
  std::vector<int> tokens;
  for (index_t x = 0; x < batch * n; ++x) tokens.push_back(int(gen.below(5)));
  const std::vector<int> labels = {0, 2, 1};

  // Evaluation mode: deterministic and mask-free; training mode: a fresh mask per call.
  m.set_training(false);
  const double eval_loss = m.loss(tokens, batch, n, labels);
  CHECK(m.loss(tokens, batch, n, labels) == eval_loss);
  m.set_training(true);
  const std::string s0 = m.dropout_generator().state();
  const double train_loss = m.loss(tokens, batch, n, labels);
  CHECK(train_loss != eval_loss);
  CHECK(m.loss(tokens, batch, n, labels) != train_loss);

  // With the masks fixed (the generator restored before every forward) the loss is a smooth
  // function of the parameters, and backward is its exact gradient.
  const auto fixed_loss = [&] {
    m.dropout_generator().set_state(s0);
    return m.loss(tokens, batch, n, labels);
  };
  m.dropout_generator().set_state(s0);
  CHECK(m.loss_and_backward(tokens, batch, n, labels) == train_loss);
  for (auto* p : m.parameters()) {
    INFO(p->name);
    const md grad = p->grad;
    CHECK(semfocus::test::fd_error(p->value, grad, fixed_loss) <= 1.0);
  }

  c.dropout = 1.0;
  CHECK_THROWS_WITH_AS(c.validate(), doctest::Contains("dropout must be in [0, 1), got 1"),
                       semfocus::invalid_argument);
}
