// SPDX-License-Identifier: MIT
// Every error of the public entry points semfocus::forward and semfocus::backward (reference
// backend), of the view constructors and of the policies: each throws semfocus::invalid_argument
// with a message that names the offending argument and the expected value. Also the empty
// problems that are not errors.
#include <doctest/doctest.h>

#include <semfocus/detail/eigen.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "support/errors.hpp"
#include "support/tensors.hpp"

using namespace semfocus;
using namespace semfocus::test;

static_assert(std::is_base_of_v<std::invalid_argument, semfocus::invalid_argument>);

namespace {

template <class F>
bool throws_nothing(const F& f) {
  try {
    f();
  } catch (...) {
    return false;
  }
  return true;
}

constexpr double nan_v = std::numeric_limits<double>::quiet_NaN();
constexpr double inf_v = std::numeric_limits<double>::infinity();

}  // namespace

/// `call` (a callable taking no argument) throws semfocus::invalid_argument, and its message
/// contains every one of the following strings.
#define CHECK_INVALID(call, ...)                                              \
  do {                                                                        \
    CHECK_THROWS_AS((call)(), semfocus::invalid_argument);                    \
    const std::string message_ = error_message(call);                         \
    INFO("message: ", message_);                                              \
    for (const char* part_ : std::initializer_list<const char*>{__VA_ARGS__}) \
      CHECK_MESSAGE(message_.find(part_) != std::string::npos,                \
                    (std::string("expected: ") + part_));                     \
  } while (false)

namespace {

using cview = tensor_view<const double>;
using mview = tensor_view<double>;

/// A valid problem of shape {batch 2, heads 3, n_q 4, n_k 5, d 3, d_v 2} with every buffer, a
/// record from forward, and the calls with any one argument replaced.
struct fixture {
  attention_shape s{2, 3, 4, 5, 3, 2};
  problem<double> pr{s, 7};
  tensor<double> out{s.out()}, dq{s.q()}, dk{s.k()}, dv{s.v()};
  forward_record_t<dense, double> rec;

  fixture() { rec = forward(exec::reference, dense{}, q(), k(), v(), out.view()); }

  cview q() const { return pr.q.view(); }
  cview k() const { return pr.k.view(); }
  cview v() const { return pr.v.view(); }
  cview o() const { return out.view(); }
  cview d_out() const { return pr.d_out.view(); }

  /// forward(dense) with the given arguments.
  auto fwd(cview q_, cview k_, cview v_, mview out_, attention_options opt = {}) const {
    return [=] { forward(exec::reference, dense{}, q_, k_, v_, out_, opt); };
  }
  /// backward(dense) with the given arguments and this fixture's record.
  auto bwd(cview q_, cview k_, cview v_, cview out_, cview d_out_, mview dq_, mview dk_,
           mview dv_) const {
    return [=, this] {
      backward(exec::reference, dense{}, q_, k_, v_, out_, d_out_, rec, dq_, dk_, dv_);
    };
  }
  auto bwd_ok() { return bwd(q(), k(), v(), o(), d_out(), dq.view(), dk.view(), dv.view()); }
};

}  // namespace

TEST_CASE("semfocus::invalid_argument is a std::invalid_argument") {
  // Caught by a handler for the standard type, with the message intact.
  bool caught = false;
  try {
    top_k bad(0);
    (void)bad;
  } catch (const std::invalid_argument& e) {
    caught = std::string(e.what()).find("top_k") != std::string::npos;
  }
  CHECK(caught);
}

TEST_CASE("the fixture itself is valid") {
  fixture f;
  CHECK(throws_nothing(f.fwd(f.q(), f.k(), f.v(), f.out.view())));
  CHECK(throws_nothing(f.bwd_ok()));
}

TEST_CASE("forward: mismatched batch, heads, dim or seq between q, k and v") {
  fixture f;
  SUBCASE("k has another batch") {
    const tensor<double> k(tensor_shape{1, 3, 5, 3});
    CHECK_INVALID(f.fwd(f.q(), k.view(), f.v(), f.out.view()), "semfocus::forward",
                  "k must have shape [2, 3, 5, 3]", "got [1, 3, 5, 3]");
  }
  SUBCASE("v has other heads") {
    const tensor<double> v(tensor_shape{2, 2, 5, 2});
    CHECK_INVALID(f.fwd(f.q(), f.k(), v.view(), f.out.view()), "semfocus::forward",
                  "v must have shape [2, 3, 5, 2]", "got [2, 2, 5, 2]");
  }
  SUBCASE("q has another batch than k and v: q fixes the shape, k is named") {
    const tensor<double> q(tensor_shape{1, 3, 4, 3});
    tensor<double> out(tensor_shape{1, 3, 4, 2});
    CHECK_INVALID(f.fwd(q.view(), f.k(), f.v(), out.view()), "k must have shape [1, 3, 5, 3]",
                  "got [2, 3, 5, 3]");
  }
  SUBCASE("k.dim != q.dim") {
    const tensor<double> k(tensor_shape{2, 3, 5, 4});
    CHECK_INVALID(f.fwd(f.q(), k.view(), f.v(), f.out.view()), "k must have shape [2, 3, 5, 3]",
                  "got [2, 3, 5, 4]");
  }
  SUBCASE("v.seq != k.seq") {
    const tensor<double> v(tensor_shape{2, 3, 6, 2});
    CHECK_INVALID(f.fwd(f.q(), f.k(), v.view(), f.out.view()), "v must have shape [2, 3, 5, 2]",
                  "got [2, 3, 6, 2]");
  }
  SUBCASE("q.dim = 0 and v.dim = 0") {
    const tensor<double> q(tensor_shape{2, 3, 4, 0}), k(tensor_shape{2, 3, 5, 0});
    CHECK_INVALID(f.fwd(q.view(), k.view(), f.v(), f.out.view()), "q.dim must be >= 1, got 0");
    const tensor<double> v(tensor_shape{2, 3, 5, 0});
    tensor<double> out(tensor_shape{2, 3, 4, 0});
    CHECK_INVALID(f.fwd(f.q(), f.k(), v.view(), out.view()), "v.dim must be >= 1, got 0");
  }
  SUBCASE("negative extents") {
    CHECK_INVALID(f.fwd(cview(f.pr.q.data.data(), {-1, 3, 4, 3}), f.k(), f.v(), f.out.view()),
                  "q extents must be >= 0", "[-1, 3, 4, 3]");
    CHECK_INVALID(f.fwd(f.q(), cview(f.pr.k.data.data(), {2, 3, -1, 3}), f.v(), f.out.view()),
                  "k.seq must be >= 0, got -1");
  }
}

TEST_CASE("forward: out of the wrong shape") {
  fixture f;
  SUBCASE("wrong seq") {
    tensor<double> out(tensor_shape{2, 3, 5, 2});
    CHECK_INVALID(f.fwd(f.q(), f.k(), f.v(), out.view()), "semfocus::forward: out must have shape",
                  "[2, 3, 4, 2]", "got [2, 3, 5, 2]");
  }
  SUBCASE("wrong dim") {
    tensor<double> out(tensor_shape{2, 3, 4, 3});
    CHECK_INVALID(f.fwd(f.q(), f.k(), f.v(), out.view()), ": out must have shape [2, 3, 4, 2]",
                  "got [2, 3, 4, 3]");
  }
  SUBCASE("wrong batch") {
    tensor<double> out(tensor_shape{1, 3, 4, 2});
    CHECK_INVALID(f.fwd(f.q(), f.k(), f.v(), out.view()), ": out must have shape [2, 3, 4, 2]",
                  "got [1, 3, 4, 2]");
  }
}

TEST_CASE("backward: any argument of the wrong shape") {
  fixture f;
  const char* fn = "semfocus::backward";
  SUBCASE("q, k, v as forward") {
    const tensor<double> k(tensor_shape{2, 3, 5, 4}), v(tensor_shape{2, 3, 6, 2});
    CHECK_INVALID(
        f.bwd(f.q(), k.view(), f.v(), f.o(), f.d_out(), f.dq.view(), f.dk.view(), f.dv.view()), fn,
        "k must have shape [2, 3, 5, 3]", "got [2, 3, 5, 4]");
    CHECK_INVALID(
        f.bwd(f.q(), f.k(), v.view(), f.o(), f.d_out(), f.dq.view(), f.dk.view(), f.dv.view()), fn,
        "v must have shape [2, 3, 5, 2]", "got [2, 3, 6, 2]");
  }
  SUBCASE("out") {
    const tensor<double> out(tensor_shape{2, 3, 4, 3});
    CHECK_INVALID(
        f.bwd(f.q(), f.k(), f.v(), out.view(), f.d_out(), f.dq.view(), f.dk.view(), f.dv.view()),
        "semfocus::backward: out must have shape [2, 3, 4, 2]", "got [2, 3, 4, 3]");
  }
  SUBCASE("d_out") {
    const tensor<double> d_out(tensor_shape{2, 3, 3, 2});
    CHECK_INVALID(
        f.bwd(f.q(), f.k(), f.v(), f.o(), d_out.view(), f.dq.view(), f.dk.view(), f.dv.view()), fn,
        "d_out must have shape [2, 3, 4, 2]", "got [2, 3, 3, 2]");
  }
  SUBCASE("dq") {
    tensor<double> dq(tensor_shape{2, 3, 4, 2});
    CHECK_INVALID(f.bwd(f.q(), f.k(), f.v(), f.o(), f.d_out(), dq.view(), f.dk.view(), f.dv.view()),
                  fn, "dq must have shape [2, 3, 4, 3]", "got [2, 3, 4, 2]");
  }
  SUBCASE("dk") {
    tensor<double> dk(tensor_shape{2, 3, 4, 3});
    CHECK_INVALID(f.bwd(f.q(), f.k(), f.v(), f.o(), f.d_out(), f.dq.view(), dk.view(), f.dv.view()),
                  fn, "dk must have shape [2, 3, 5, 3]", "got [2, 3, 4, 3]");
  }
  SUBCASE("dv") {
    tensor<double> dv(tensor_shape{2, 3, 5, 3});
    CHECK_INVALID(f.bwd(f.q(), f.k(), f.v(), f.o(), f.d_out(), f.dq.view(), f.dk.view(), dv.view()),
                  fn, "dv must have shape [2, 3, 5, 2]", "got [2, 3, 5, 3]");
  }
}

TEST_CASE("null data for a non-empty view") {
  fixture f;
  const attention_shape& s = f.s;
  const cview null_q(nullptr, s.q()), null_k(nullptr, s.k()), null_v(nullptr, s.v()),
      null_o(nullptr, s.out());
  const mview null_out(nullptr, s.out()), null_dq(nullptr, s.q()), null_dk(nullptr, s.k()),
      null_dv(nullptr, s.v());
  CHECK_INVALID(f.fwd(null_q, f.k(), f.v(), f.out.view()), "semfocus::forward",
                "q data is null for a non-empty shape [2, 3, 4, 3]");
  CHECK_INVALID(f.fwd(f.q(), null_k, f.v(), f.out.view()),
                "k data is null for a non-empty shape [2, 3, 5, 3]");
  CHECK_INVALID(f.fwd(f.q(), f.k(), null_v, f.out.view()),
                "v data is null for a non-empty shape [2, 3, 5, 2]");
  CHECK_INVALID(f.fwd(f.q(), f.k(), f.v(), null_out),
                "out data is null for a non-empty shape [2, 3, 4, 2]");
  CHECK_INVALID(
      f.bwd(f.q(), f.k(), f.v(), null_o, f.d_out(), f.dq.view(), f.dk.view(), f.dv.view()),
      "semfocus::backward", "out data is null for a non-empty shape [2, 3, 4, 2]");
  CHECK_INVALID(f.bwd(f.q(), f.k(), f.v(), f.o(), null_o, f.dq.view(), f.dk.view(), f.dv.view()),
                "d_out data is null for a non-empty shape [2, 3, 4, 2]");
  CHECK_INVALID(f.bwd(f.q(), f.k(), f.v(), f.o(), f.d_out(), null_dq, f.dk.view(), f.dv.view()),
                "dq data is null for a non-empty shape [2, 3, 4, 3]");
  CHECK_INVALID(f.bwd(f.q(), f.k(), f.v(), f.o(), f.d_out(), f.dq.view(), null_dk, f.dv.view()),
                "dk data is null for a non-empty shape [2, 3, 5, 3]");
  CHECK_INVALID(f.bwd(f.q(), f.k(), f.v(), f.o(), f.d_out(), f.dq.view(), f.dk.view(), null_dv),
                "dv data is null for a non-empty shape [2, 3, 5, 2]");
  CHECK_INVALID(
      f.bwd(null_q, f.k(), f.v(), f.o(), f.d_out(), f.dq.view(), f.dk.view(), f.dv.view()),
      "semfocus::backward: q data is null");
}

TEST_CASE("a std::span buffer too small for the shape") {
  const tensor_shape shape{2, 3, 4, 5};  // 120 elements
  std::vector<double> buf(120);
  CHECK_INVALID([&] { (void)mview(std::span<double>(buf.data(), 119), shape); },
                "tensor_view: buffer too small", "it has 119 elements", "[2, 3, 4, 5]",
                "needs at least 120");
  CHECK_INVALID([&] { (void)cview(std::span<const double>(buf.data(), 0), shape); },
                "tensor_view: buffer too small", "needs at least 120");
  CHECK(throws_nothing([&] { (void)mview(std::span<double>(buf), shape); }));
  // Strided: [batch, seq, heads, dim] storage of the same 120 elements fits exactly, a seq stride
  // one larger does not: the last element is at 1*60 + 2*5 + 3*16 + 4 = 122.
  CHECK(throws_nothing([&] { (void)mview(std::span<double>(buf), shape, {60, 5, 15}); }));
  CHECK_INVALID(
      [&] {
        (void)mview(std::span<double>(buf), shape, {60, 5, 16});
      },
      "tensor_view: buffer too small", "it has 120 elements", "needs at least 123");
  // An empty shape needs nothing.
  CHECK(throws_nothing([&] { (void)mview(std::span<double>(), tensor_shape{2, 0, 4, 5}); }));
}

TEST_CASE("negative strides are rejected") {
  fixture f;
  std::vector<double> buf(200);
  SUBCASE("by the std::span constructor") {
    CHECK_INVALID(
        [&] {
          (void)mview(std::span<double>(buf), {2, 3, 4, 3}, {36, -12, 3});
        },
        "tensor_view: strides must be >= 0");
  }
  SUBCASE("by forward and backward, for inputs and outputs") {
    // Raw-pointer views cannot check; the entry points do, before touching any element.
    const cview q(f.pr.q.data.data() + 33, f.s.q(), {36, 12, -3});
    CHECK_INVALID(f.fwd(q, f.k(), f.v(), f.out.view()), "semfocus::forward",
                  "q strides must be >= 0, got {36, 12, -3}");
    const mview out(f.out.data.data() + 23, f.s.out(), {-24, 8, 2});
    CHECK_INVALID(f.fwd(f.q(), f.k(), f.v(), out), "out strides must be >= 0, got {-24, 8, 2}");
    const mview dk(f.dk.data.data(), f.s.k(), {45, -15, 3});
    CHECK_INVALID(f.bwd(f.q(), f.k(), f.v(), f.o(), f.d_out(), f.dq.view(), dk, f.dv.view()),
                  "semfocus::backward", "dk strides must be >= 0, got {45, -15, 3}");
    const cview d_out(f.pr.d_out.data.data(), f.s.out(), {24, 8, -2});
    CHECK_INVALID(f.bwd(f.q(), f.k(), f.v(), f.o(), d_out, f.dq.view(), f.dk.view(), f.dv.view()),
                  "d_out strides must be >= 0, got {24, 8, -2}");
  }
}

TEST_CASE("overlapping strides: rejected for outputs, accepted (broadcast) for inputs") {
  fixture f;
  const attention_shape& s = f.s;
  SUBCASE("out with seq stride 0 and seq > 1") {
    const mview out(f.out.data.data(), s.out(), {24, 8, 0});
    CHECK_INVALID(f.fwd(f.q(), f.k(), f.v(), out), "semfocus::forward",
                  "out strides make distinct elements overlap");
  }
  SUBCASE("out rows that overlap partially (seq stride 1 < dim 2)") {
    const mview out(f.out.data.data(), s.out(), {24, 8, 1});
    CHECK_INVALID(f.fwd(f.q(), f.k(), f.v(), out), "out strides make distinct elements overlap");
  }
  SUBCASE("dq, dk, dv") {
    const mview dq(f.dq.data.data(), s.q(), {12, 0, 3});  // heads share rows
    CHECK_INVALID(f.bwd(f.q(), f.k(), f.v(), f.o(), f.d_out(), dq, f.dk.view(), f.dv.view()),
                  "semfocus::backward", "dq strides make distinct elements overlap");
    const mview dk(f.dk.data.data(), s.k(), {0, 15, 3});  // batches share rows
    CHECK_INVALID(f.bwd(f.q(), f.k(), f.v(), f.o(), f.d_out(), f.dq.view(), dk, f.dv.view()),
                  "dk strides make distinct elements overlap");
    const mview dv(f.dv.data.data(), s.v(), {30, 10, 0});
    CHECK_INVALID(f.bwd(f.q(), f.k(), f.v(), f.o(), f.d_out(), f.dq.view(), f.dk.view(), dv),
                  "dv strides make distinct elements overlap");
  }
  SUBCASE("broadcast inputs are accepted and equal an explicit copy") {
    // Every head of a batch shares the keys and values of head 0; every query row equals row 0.
    tensor<double> k_full(s.k()), v_full(s.v()), q_full(s.q());
    for (index_t b = 0; b < s.batch; ++b)
      for (index_t h = 0; h < s.heads; ++h) {
        for (index_t j = 0; j < s.n_k; ++j) {
          for (index_t c = 0; c < s.d; ++c) k_full(b, h, j, c) = f.pr.k(b, 0, j, c);
          for (index_t c = 0; c < s.d_v; ++c) v_full(b, h, j, c) = f.pr.v(b, 0, j, c);
        }
        for (index_t i = 0; i < s.n_q; ++i)
          for (index_t c = 0; c < s.d; ++c) q_full(b, h, i, c) = f.pr.q(b, h, 0, c);
      }
    const cview k_bc(f.pr.k.data.data(), s.k(), {s.heads * s.n_k * s.d, 0, s.d});
    const cview v_bc(f.pr.v.data.data(), s.v(), {s.heads * s.n_k * s.d_v, 0, s.d_v});
    const cview q_bc(f.pr.q.data.data(), s.q(), {s.heads * s.n_q * s.d, s.n_q * s.d, 0});
    tensor<double> out(s.out()), out_full(s.out());
    tensor<double> dq(s.q()), dk(s.k()), dv(s.v()), dq_full(s.q()), dk_full(s.k()), dv_full(s.v());
    const auto rec_full = forward(exec::reference, top_k(2), q_full.view(), k_full.view(),
                                  v_full.view(), out_full.view());
    backward(exec::reference, top_k(2), q_full.view(), k_full.view(), v_full.view(),
             out_full.cview(), f.d_out(), rec_full, dq_full.view(), dk_full.view(), dv_full.view());
    forward_record_t<top_k, double> rec;
    CHECK(throws_nothing(
        [&] { forward(exec::reference, top_k(2), q_bc, k_bc, v_bc, out.view(), rec); }));
    CHECK(out.data == out_full.data);
    // backward reads out and d_out: broadcast is fine there too (d_out row 0 for every row).
    const cview d_out_bc(f.pr.d_out.data.data(), s.out(), {24, 8, 0});
    CHECK(throws_nothing([&] {
      backward(exec::reference, top_k(2), q_bc, k_bc, v_bc, out.cview(), f.d_out(), rec, dq.view(),
               dk.view(), dv.view());
    }));
    CHECK(dq.data == dq_full.data);
    CHECK(dk.data == dk_full.data);
    CHECK(dv.data == dv_full.data);
    CHECK(throws_nothing([&] {
      backward(exec::reference, top_k(2), q_bc, k_bc, v_bc, out.cview(), d_out_bc, rec, dq.view(),
               dk.view(), dv.view());
    }));
  }
}

TEST_CASE("a non-finite scale is rejected") {
  fixture f;
  CHECK_INVALID(f.fwd(f.q(), f.k(), f.v(), f.out.view(), {.scale = nan_v}), "semfocus::forward",
                "scale must be finite, got", "nan");
  CHECK_INVALID(f.fwd(f.q(), f.k(), f.v(), f.out.view(), {.scale = inf_v}),
                "scale must be finite, got inf");
  CHECK_INVALID(f.fwd(f.q(), f.k(), f.v(), f.out.view(), {.scale = -inf_v}),
                "scale must be finite, got -inf");
  // Finite scales of any sign are fine, and the record keeps them.
  forward_record_t<dense, double> rec;
  forward(exec::reference, dense{}, f.q(), f.k(), f.v(), f.out.view(), rec, {.scale = -0.25});
  CHECK(rec.scale == -0.25);
  // A record whose scale is not finite is rejected by backward.
  f.rec.scale = nan_v;
  CHECK_INVALID(f.bwd_ok(), "semfocus::backward", "record scale must be finite");
}

TEST_CASE("policy parameters: k out of range, non-finite or negative thresholds") {
  fixture f;  // n_q = 4, n_k = 5
  auto fwd_with = [&](const auto& p) {
    return [&f, p] {
      tensor<double> out(f.s.out());
      forward(exec::reference, p, f.q(), f.k(), f.v(), out.view());
    };
  };
  SUBCASE("top_k") {
    CHECK_INVALID(fwd_with(top_k(6)), "top_k: k must be in [1, n_k] with n_k = 5, got 6");
    CHECK_INVALID([] { (void)top_k(0); }, "top_k: k must be >= 1, got 0");
    CHECK_INVALID([] { (void)top_k(-3); }, "top_k: k must be >= 1, got -3");
    CHECK(throws_nothing(fwd_with(top_k(5))));
    // backward validates the policy too.
    const auto rec = forward(exec::reference, top_k(5), f.q(), f.k(), f.v(), f.out.view());
    CHECK_INVALID(
        [&] {
          backward(exec::reference, top_k(6), f.q(), f.k(), f.v(), f.o(), f.d_out(), rec,
                   f.dq.view(), f.dk.view(), f.dv.view());
        },
        "top_k: k must be in [1, n_k] with n_k = 5, got 6");
    // A k mutated after construction is caught at the call.
    top_k p(2);
    p.k = 0;
    CHECK_INVALID(fwd_with(p), "top_k: k must be in [1, n_k] with n_k = 5, got 0");
  }
  SUBCASE("bottom_k, banded, random_k, block_local, strided") {
    CHECK_INVALID(fwd_with(bottom_k(7)), "bottom_k: k must be in [1, n_k] with n_k = 5, got 7");
    CHECK_INVALID([] { (void)bottom_k(0); }, "bottom_k: k must be >= 1, got 0");
    CHECK_INVALID(fwd_with(banded(6)), "banded: k must be in [1, n_k] with n_k = 5, got 6");
    CHECK_INVALID([] { (void)banded(0); }, "banded: k must be >= 1, got 0");
    CHECK_INVALID(fwd_with(random_k(6, 1)), "random_k: k must be in [1, n_k] with n_k = 5, got 6");
    CHECK_INVALID([] { (void)random_k(0, 1); }, "random_k: k must be >= 1, got 0");
    CHECK_INVALID([] { (void)block_local(0); }, "block_local: k must be >= 1, got 0");
    CHECK_INVALID([] { (void)strided(0); }, "strided: stride must be >= 1, got 0");
    CHECK_INVALID([] { (void)strided(2, -1); }, "strided: local must be >= 0, got -1");
  }
  SUBCASE("global tokens and explicit masks") {
    CHECK_INVALID(fwd_with(global_tokens(banded(1), 5)),
                  "with_global: the number of global tokens must be in [0, min(n_q, n_k)] = [0, 4]",
                  "got 5");
    CHECK_INVALID([] { (void)global_tokens(dense{}, -1); },
                  "with_global: the number of global tokens must be >= 0, got -1");
    // The inner mask is validated on the shape without the global tokens: n_k - 2 = 3.
    CHECK_INVALID(fwd_with(global_tokens(banded(4), 2)),
                  "banded: k must be in [1, n_k] with n_k = 3, got 4");
    const tensor<std::uint8_t> wrong_keys(tensor_shape{1, 1, 4, 6});
    CHECK_INVALID(fwd_with(explicit_mask(wrong_keys.cview())),
                  "explicit_mask: mask must have n_q x n_k = 4 x 5", "got shape [1, 1, 4, 6]");
    const tensor<int> wrong_batch(tensor_shape{3, 1, 4, 5}), wrong_heads(tensor_shape{1, 2, 4, 5});
    CHECK_INVALID(fwd_with(explicit_mask(wrong_batch.cview())),
                  "explicit_mask: mask batch must be 1 or 2, got 3");
    CHECK_INVALID(fwd_with(explicit_mask(wrong_heads.cview())),
                  "explicit_mask: mask heads must be 1 or 3, got 2");
    CHECK_INVALID(fwd_with(explicit_mask(tensor_view<const int>(nullptr, {2, 3, 4, 5}))),
                  "explicit_mask: mask data is null");
  }
  SUBCASE("threshold") {
    CHECK_INVALID([] { (void)threshold(nan_v); }, "threshold: tau must be finite and >= 0, got",
                  "nan");
    CHECK_INVALID([] { (void)threshold(inf_v); },
                  "threshold: tau must be finite and >= 0, got inf");
    CHECK_INVALID([] { (void)threshold(-0.5); },
                  "threshold: tau must be finite and >= 0, got -0.5");
    CHECK(throws_nothing([] { (void)threshold(0.0); }));
    threshold p(1.0);
    p.tau = -1.0;
    CHECK_INVALID(fwd_with(p), "threshold: tau must be finite and >= 0, got -1");
  }
  SUBCASE("absolute_threshold") {
    CHECK_INVALID([] { (void)absolute_threshold(nan_v); }, "absolute_threshold: tau must be finite",
                  "nan");
    CHECK_INVALID([] { (void)absolute_threshold(-inf_v); },
                  "absolute_threshold: tau must be finite, got -inf");
    CHECK(throws_nothing([] { (void)absolute_threshold(-3.0); }));  // any finite tau
    absolute_threshold p(0.0);
    p.tau = inf_v;
    CHECK_INVALID(fwd_with(p), "absolute_threshold: tau must be finite, got inf");
  }
}

TEST_CASE("backward with a record made for another shape or tampered with") {
  fixture f;
  SUBCASE("forward on one shape, backward on another") {
    const attention_shape s2{2, 3, 3, 5, 3, 2};  // n_q 3 instead of 4
    const problem<double> p2(s2, 9);
    tensor<double> dq(s2.q()), dk(s2.k()), dv(s2.v()), out(s2.out());
    CHECK_INVALID(
        [&] {
          backward(exec::reference, dense{}, p2.q.view(), p2.k.view(), p2.v.view(), out.cview(),
                   p2.d_out.view(), f.rec, dq.view(), dk.view(), dv.view());
        },
        "semfocus::backward: record was made for shape",
        "{batch 2, heads 3, n_q 4, n_k 5, d 3, d_v 2}",
        "but the arguments have shape {batch 2, heads 3, n_q 3, n_k 5, d 3, d_v 2}");
  }
  SUBCASE("a record never filled by forward") {
    f.rec = {};
    CHECK_INVALID(f.bwd_ok(), "semfocus::backward: record was not filled by forward");
  }
  SUBCASE("a record whose arrays do not match its shape") {
    f.rec.lse.pop_back();
    CHECK_INVALID(f.bwd_ok(), "record lse must hold 24 rows, got 23");
  }
  SUBCASE("a row-policy record whose statistics are missing") {
    auto rec = forward(exec::reference, top_k(2), f.q(), f.k(), f.v(), f.out.view());
    rec.stats.resize(3);
    CHECK_INVALID(
        [&] {
          backward(exec::reference, top_k(2), f.q(), f.k(), f.v(), f.o(), f.d_out(), rec,
                   f.dq.view(), f.dk.view(), f.dv.view());
        },
        "record stats must hold 24 rows, got 3");
  }
}

TEST_CASE("an Eigen matrix view with inner stride != 1 is rejected") {
  using mat = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  std::vector<double> buf(24);
  const Eigen::Map<const mat, 0, Eigen::InnerStride<>> strided_q(buf.data(), 4, 3,
                                                                 Eigen::InnerStride<>(2));
  CHECK_INVALID([&] { (void)cview(strided_q); },
                "tensor_view: matrix inner stride must be 1, got 2");
  CHECK_INVALID([&] { (void)semfocus::view(strided_q); }, "matrix inner stride must be 1, got 2");
  Eigen::Map<mat, 0, Eigen::InnerStride<3>> strided_out(buf.data(), 4, 2);
  CHECK_INVALID([&] { (void)mview(strided_out); }, "matrix inner stride must be 1, got 3");
  // The same matrices with unit inner stride are fine, through forward too.
  const mat q = mat::Random(4, 3), k = mat::Random(5, 3), v = mat::Random(5, 2);
  mat out(4, 2);
  CHECK(throws_nothing([&] { forward(exec::reference, dense{}, q, k, v, semfocus::view(out)); }));
  CHECK_INVALID([&] { forward(exec::reference, dense{}, strided_q, k, v, semfocus::view(out)); },
                "matrix inner stride must be 1, got 2");
}

TEST_CASE("empty problems are not errors") {
  SUBCASE("n_k = 0: zero output, -inf log-sum-exp, zero dq, no NaN") {
    const attention_shape s{2, 2, 3, 0, 3, 2};
    const problem<double> pr(s, 13);
    tensor<double> out(s.out(), 42.0), dq(s.q(), 1e30);
    const cview k(nullptr, s.k()), v(nullptr, s.v());  // empty: null data is fine
    const auto rec = forward(exec::reference, dense{}, pr.q.view(), k, v, out.view());
    CHECK(rec.lse.size() == 12);
    for (double x : rec.lse) CHECK(x == -INFINITY);
    for (double x : out.data) CHECK(x == 0.0);
    backward(exec::reference, dense{}, pr.q.view(), k, v, out.cview(), pr.d_out.view(), rec,
             dq.view(), mview(nullptr, s.k()), mview(nullptr, s.v()));
    for (double x : dq.data) CHECK(x == 0.0);
    // Selection policies that accept n_k = 0 agree; top_k does not (k must be in [1, 0]).
    tensor<double> out2(s.out(), 42.0);
    const auto rt = forward(exec::reference, threshold(1.0), pr.q.view(), k, v, out2.view());
    for (double x : rt.lse) CHECK(x == -INFINITY);
    for (double x : out2.data) CHECK(x == 0.0);
    CHECK_INVALID([&] { forward(exec::reference, top_k(1), pr.q.view(), k, v, out2.view()); },
                  "top_k: k must be in [1, n_k] with n_k = 0, got 1");
  }
  SUBCASE("n_q = 0: nothing to compute, dk and dv are zero") {
    const attention_shape s{2, 2, 0, 4, 3, 2};
    const problem<double> pr(s, 14);
    const auto rec = forward(exec::reference, top_k(2), cview(nullptr, s.q()), pr.k.view(),
                             pr.v.view(), mview(nullptr, s.out()));
    CHECK(rec.lse.empty());
    CHECK(rec.stats.empty());
    tensor<double> dk(s.k(), 1e30), dv(s.v(), 1e30);
    backward(exec::reference, top_k(2), cview(nullptr, s.q()), pr.k.view(), pr.v.view(),
             cview(nullptr, s.out()), cview(nullptr, s.out()), rec, mview(nullptr, s.q()),
             dk.view(), dv.view());
    for (double x : dk.data) CHECK(x == 0.0);
    for (double x : dv.data) CHECK(x == 0.0);
  }
  SUBCASE("batch = 0") {
    const attention_shape s{0, 2, 3, 4, 3, 2};
    const cview q(nullptr, s.q()), k(nullptr, s.k()), v(nullptr, s.v()), o(nullptr, s.out());
    forward_record_t<dense, double> rec;
    CHECK(throws_nothing(
        [&] { forward(exec::reference, dense{}, q, k, v, mview(nullptr, s.out()), rec); }));
    CHECK(rec.shape == s);
    CHECK(rec.lse.empty());
    CHECK(throws_nothing([&] {
      backward(exec::reference, dense{}, q, k, v, o, o, rec, mview(nullptr, s.q()),
               mview(nullptr, s.k()), mview(nullptr, s.v()));
    }));
  }
}

TEST_CASE("outputs that alias inputs or each other are rejected") {
  fixture f;
  SUBCASE("forward: out is v's buffer (same shape here)") {
    const attention_shape s{1, 1, 4, 4, 2, 2};
    problem<double> p(s, 3);
    const mview out_on_v(p.v.data.data(), s.out());
    CHECK_INVALID(
        [&] { forward(exec::reference, dense{}, p.q.view(), p.k.view(), p.v.view(), out_on_v); },
        "semfocus::forward: out overlaps the memory of v");
    const mview out_on_q(p.q.data.data(), s.out());
    CHECK_INVALID(
        [&] { forward(exec::reference, dense{}, p.q.view(), p.k.view(), p.v.view(), out_on_q); },
        "out overlaps the memory of q");
  }
  SUBCASE("forward: out partly overlaps the end of k") {
    std::vector<double> buf(std::size_t(f.s.k().size() + f.s.out().size() - 1));
    std::copy(f.pr.k.data.begin(), f.pr.k.data.end(), buf.begin());
    const cview k_in(buf.data(), f.s.k());
    const mview out(buf.data() + f.s.k().size() - 1, f.s.out());
    CHECK_INVALID(f.fwd(f.q(), k_in, f.v(), out), "out overlaps the memory of k");
  }
  SUBCASE("backward: a gradient on an input, or two gradients sharing memory") {
    tensor<double> dq_on_q = f.pr.q;  // copy, then alias dq with this q
    CHECK_INVALID(f.bwd(dq_on_q.view(), f.k(), f.v(), f.o(), f.d_out(), dq_on_q.view(), f.dk.view(),
                        f.dv.view()),
                  "semfocus::backward: dq overlaps the memory of q");
    std::vector<double> big(std::size_t(f.s.v().size()));
    CHECK_INVALID(f.bwd(f.q(), f.k(), f.v(), f.o(), cview(big.data(), f.s.out()), f.dq.view(),
                        f.dk.view(), mview(big.data(), f.s.v())),
                  "dv overlaps the memory of d_out");
    // dq and dk share memory when n_q = n_k and d = d: build such a problem.
    const attention_shape s{1, 1, 3, 3, 2, 2};
    problem<double> p(s, 5);
    tensor<double> out(s.out()), shared(s.q()), dv(s.v());
    const auto rec =
        forward(exec::reference, dense{}, p.q.view(), p.k.view(), p.v.view(), out.view());
    CHECK_INVALID(
        [&] {
          backward(exec::reference, dense{}, p.q.view(), p.k.view(), p.v.view(), out.cview(),
                   p.d_out.view(), rec, shared.view(), shared.view(), dv.view());
        },
        "dq overlaps the memory of dk");
  }
  SUBCASE("disjoint neighbours in one buffer are fine") {
    std::vector<double> buf(std::size_t(f.s.q().size() + f.s.out().size()));
    std::copy(f.pr.q.data.begin(), f.pr.q.data.end(), buf.begin());
    CHECK(throws_nothing(f.fwd(cview(buf.data(), f.s.q()), f.k(), f.v(),
                               mview(buf.data() + f.s.q().size(), f.s.out()))));
  }
}

TEST_CASE("backward rejects a record made with a different policy value") {
  const attention_shape s{1, 2, 5, 6, 3, 2};
  const problem<double> p(s, 13);
  tensor<double> out(s.out()), dq(s.q()), dk(s.k()), dv(s.v());
  const auto rec3 =
      forward(exec::reference, top_k(3), p.q.view(), p.k.view(), p.v.view(), out.view());
  CHECK_INVALID(
      [&] {
        backward(exec::reference, top_k(4), p.q.view(), p.k.view(), p.v.view(), out.cview(),
                 p.d_out.view(), rec3, dq.view(), dk.view(), dv.view());
      },
      "semfocus::backward: record was made by forward with a different policy value");
  const auto rec_dense =
      forward(exec::reference, dense{}, p.q.view(), p.k.view(), p.v.view(), out.view());
  CHECK_INVALID(
      [&] {
        backward(exec::reference, dense{.is_causal = true}, p.q.view(), p.k.view(), p.v.view(),
                 out.cview(), p.d_out.view(), rec_dense, dq.view(), dk.view(), dv.view());
      },
      "different policy value");
  CHECK(throws_nothing([&] {
    backward(exec::reference, dense{}, p.q.view(), p.k.view(), p.v.view(), out.cview(),
             p.d_out.view(), rec_dense, dq.view(), dk.view(), dv.view());
  }));
}

TEST_CASE("with_global reports an inner-mask error with the reduced shape") {
  const attention_shape s{1, 1, 6, 6, 2, 2};
  const problem<double> p(s, 17);
  tensor<double> out(s.out());
  CHECK_INVALID(
      [&] {
        forward(exec::reference, global_tokens(banded(5), 2), p.q.view(), p.k.view(), p.v.view(),
                out.view());
      },
      "semfocus::with_global: the inner mask applies to the (n_q - G) x (n_k - G) = 4 x 4 block",
      "(G = 2)", "semfocus::banded: k must be in [1, n_k] with n_k = 4, got 5");
}

TEST_CASE("extents whose element count overflows index_t are rejected") {
  const index_t huge = index_t(1) << 40;
  double x = 0;
  const attention_shape s{huge, huge, 2, 2, 2, 2};  // batch * heads overflows
  const cview q(&x, s.q());
  CHECK_INVALID([&] { forward(exec::reference, dense{}, q, q, q, mview(&x, s.out())); },
                "semfocus::forward: q of shape", "addresses more elements than index_t can count");
}
