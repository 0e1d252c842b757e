// SPDX-License-Identifier: MIT
#include <doctest/doctest.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <semfocus/nn/checkpoint.hpp>
#include <semfocus/nn/landscape.hpp>
#include <semfocus/nn/model.hpp>

#include "support/errors.hpp"

// Checkpoints (exact round trips through text and files, every parse and restore error) and the
// loss landscape (directions scaled to the parameters, grids of an analytic loss, the restore
// guard, neighbour ratios and their type-7 quantiles against hand computations, a real model).

namespace {

using semfocus::index_t;
namespace nn = semfocus::nn;
using semfocus::test::contains;
using semfocus::test::error_message;
using md = nn::matrix<double>;
using float_model = nn::encoder_classifier<semfocus::dense, semfocus::exec::reference_t, float>;
const double not_a_number = std::numeric_limits<double>::quiet_NaN();
const double infinity = std::numeric_limits<double>::infinity();

template <class T>
bool same_bits(const nn::matrix<T>& a, const nn::matrix<T>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), sizeof(T) * std::size_t(a.size())) == 0;
}

md mat(index_t rows, index_t cols, std::initializer_list<double> v) {
  md m(rows, cols);
  std::copy(v.begin(), v.end(), m.data());
  return m;
}

template <class T>
nn::parameter_list<T> pointers(std::vector<nn::parameter<T>>& ps) {
  nn::parameter_list<T> list;
  for (auto& p : ps) list.push_back(&p);
  return list;
}

nn::model_config small_config(std::uint64_t seed) {
  return {.vocab = 3,
          .classes = 2,
          .blocks = 2,
          .d = 8,
          .heads = 2,
          .d_mlp = 6,
          .activation = nn::activation::gelu,
          .ln_eps = 1e-3,
          .first_ln_eps = 0.1,
          .seed = seed};
}

/// Every field equal, the eps bit for bit.
void check_config(const nn::model_config& got, const nn::model_config& want) {
  CHECK(got.vocab == want.vocab);
  CHECK(got.classes == want.classes);
  CHECK(got.blocks == want.blocks);
  CHECK(got.d == want.d);
  CHECK(got.heads == want.heads);
  CHECK(got.d_mlp == want.d_mlp);
  CHECK(got.activation == want.activation);
  CHECK(std::bit_cast<std::uint64_t>(got.ln_eps) == std::bit_cast<std::uint64_t>(want.ln_eps));
  CHECK(std::bit_cast<std::uint64_t>(got.first_ln_eps) ==
        std::bit_cast<std::uint64_t>(want.first_ln_eps));
  CHECK(got.seed == want.seed);
}

std::string replaced(std::string s, const std::string& from, const std::string& to) {
  const auto at = s.find(from);
  REQUIRE(at != std::string::npos);
  return s.replace(at, from.size(), to);
}

/// Checks that f throws semfocus::invalid_argument with every part in its message.
template <class F>
void check_error(const F& f, std::initializer_list<std::string> parts) {
  const std::string msg = error_message(f);
  INFO(msg);
  for (const std::string& p : parts) CHECK(contains(msg, p));
}

std::string unique_temp(const std::string& stem) {
  const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
  return (std::filesystem::temp_directory_path() /
          (stem + std::to_string(stamp) + "_" + std::to_string(std::random_device{}())))
      .string();
}

/// Neighbour ratios computed independently of the header: coordinates e (2i - (G-1)) / (G-1),
/// membership by squared distance; sorted.
std::vector<double> brute_ratios(const nn::landscape_grid& g, double r) {
  const index_t G = g.points;
  const auto x = [&](index_t i) { return g.extent * double(2 * i - (G - 1)) / double(G - 1); };
  const auto in = [&](index_t i, index_t j) { return x(i) * x(i) + x(j) * x(j) <= r * r; };
  const auto L = [&](index_t i, index_t j) { return g.loss[std::size_t(j * G + i)]; };
  const double h = 2 * g.extent / double(G - 1);
  std::vector<double> out;
  for (index_t j = 0; j < G; ++j)
    for (index_t i = 0; i < G; ++i) {
      if (i + 1 < G && in(i, j) && in(i + 1, j)) out.push_back(std::abs(L(i + 1, j) - L(i, j)) / h);
      if (j + 1 < G && in(i, j) && in(i, j + 1)) out.push_back(std::abs(L(i, j + 1) - L(i, j)) / h);
    }
  std::sort(out.begin(), out.end());
  return out;
}

double type7(const std::vector<double>& s, double p) {
  const double h = p * double(s.size() - 1);
  const std::size_t lo = std::size_t(h);
  return lo + 1 < s.size() ? s[lo] + (h - double(lo)) * (s[lo + 1] - s[lo]) : s[lo];
}

}  // namespace

TEST_CASE("checkpoint: a float model round-trips bit for bit") {
  const nn::model_config c = small_config(7);
  float_model a(c, semfocus::dense{}), b(small_config(8), semfocus::dense{});
  std::stringstream io;
  nn::write_checkpoint(io, c, a.parameters(), "task=parity policy=dense");
  CHECK(contains(io.str(), "semfocus-checkpoint 1\nconfig 3 2 2 8 2 6 gelu 0x"));
  const nn::checkpoint k = nn::read_checkpoint(io);
  check_config(k.config, c);
  CHECK(k.meta == "task=parity policy=dense");

  const auto pa = a.parameters(), pb = b.parameters();
  REQUIRE(k.tensors.size() == pa.size());  // restore checks the names and shapes
  const std::vector<std::vector<int>> tokens = {{0, 1, 2, 1, 0}, {2, 2, 1, 0, 1}};
  CHECK_FALSE(same_bits(a.forward(tokens), b.forward(tokens)));
  pb[3]->grad.setConstant(4.5f);
  nn::restore(pb, k);
  for (std::size_t t = 0; t < pa.size(); ++t) {
    INFO(pa[t]->name);
    CHECK(same_bits(pa[t]->value, pb[t]->value));
  }
  CHECK((pb[3]->grad.array() == 4.5f).all());  // gradients untouched
  CHECK(same_bits(a.forward(tokens), b.forward(tokens)));

  // The file does not depend on the scalar type: the same checkpoint restores a double model.
  nn::encoder_classifier<semfocus::dense, semfocus::exec::reference_t, double> d(small_config(9),
                                                                                 {});
  const auto pd = d.parameters();
  nn::restore(pd, k);
  for (std::size_t t = 0; t < pa.size(); ++t) CHECK(pd[t]->value == pa[t]->value.cast<double>());
}

TEST_CASE("checkpoint: doubles round-trip bit for bit, including -0, denormals and extremes") {
  using lim = std::numeric_limits<double>;
  std::vector<nn::parameter<double>> src = {{"w", 2, 4}, {"b", 1, 3}},
                                     dst = {{"w", 2, 4}, {"b", 1, 3}};
  src[0].value = mat(
      2, 4, {0.1, 1.0 / 3, lim::denorm_min(), -0.0, lim::max(), -lim::min(), 1e-310, -2.5e-308});
  src[1].value = mat(1, 3, {-1.0 / 7, 0x1.fffffffffffffp-1, 6.02214076e23});
  nn::model_config c;
  c.seed = std::numeric_limits<std::uint64_t>::max();
  c.ln_eps = lim::denorm_min();
  std::stringstream io;
  nn::write_checkpoint(io, c, pointers(src));
  const nn::checkpoint k = nn::read_checkpoint(io);
  check_config(k.config, c);
  CHECK(k.meta.empty());
  nn::restore(pointers(dst), k);
  CHECK(same_bits(dst[0].value, src[0].value));
  CHECK(same_bits(dst[1].value, src[1].value));
  CHECK(std::signbit(dst[0].value(0, 3)));
}

TEST_CASE("checkpoint: meta is written on one line") {
  std::vector<nn::parameter<double>> ps = {{"w", 1, 1}};
  std::ostringstream out;
  nn::write_checkpoint(out, nn::model_config{}, pointers(ps), "a\nb\r\nc  ");
  CHECK(contains(out.str(), "\nmeta a b  c  \ntensors 1\nw 1 1\n0x0p+0\nend\n"));
  std::istringstream in(out.str());
  const nn::checkpoint k = nn::read_checkpoint(in);
  CHECK(k.meta == "a b  c  ");
  REQUIRE(k.tensors.size() == 1);
  CHECK(k.tensors[0].values == std::vector<double>{0.0});
}

TEST_CASE("checkpoint: save_checkpoint and load_checkpoint through a file") {
  const std::string path = unique_temp("semfocus_checkpoint_test_");
  struct remover {
    std::string p;
    ~remover() {
      std::error_code ec;
      std::filesystem::remove(p, ec);
    }
  } cleanup{path};
  const nn::model_config c = small_config(7);
  float_model a(c, semfocus::dense{}), b(small_config(1), semfocus::dense{});
  nn::save_checkpoint(path, c, a.parameters(), "saved");
  const nn::checkpoint k = nn::load_checkpoint(path);
  CHECK(k.meta == "saved");
  check_config(k.config, c);
  nn::restore(b.parameters(), k);
  const auto pa = a.parameters(), pb = b.parameters();
  for (std::size_t t = 0; t < pa.size(); ++t) CHECK(same_bits(pa[t]->value, pb[t]->value));

  std::ofstream(path) << "semfocus-checkpoint 1\nconfig x";
  check_error([&] { (void)nn::load_checkpoint(path); }, {"config vocab", "(in '" + path + "')"});
  const std::string missing = unique_temp("semfocus_no_such_dir_") + "/none.ckpt";
  check_error([&] { (void)nn::load_checkpoint(missing); },
              {"load_checkpoint", "'" + missing + "'"});
  check_error([&] { nn::save_checkpoint(missing, c, a.parameters()); },
              {"save_checkpoint", "'" + missing + "'"});
}

TEST_CASE("checkpoint: read_checkpoint names what is wrong") {
  const std::string good =
      "semfocus-checkpoint 1\nconfig 3 2 1 8 2 6 mish 0x1p-10 0x0p+0 7\nmeta hello world\n"
      "tensors 2\nw 2 2\n1 0x1.8p+1\n-2.5 4\nb 1 1\n5\nend\n";
  std::istringstream in(good);
  const nn::checkpoint k = nn::read_checkpoint(in);  // decimal values are accepted too
  CHECK(k.config.activation == nn::activation::mish);
  CHECK(k.config.ln_eps == 0x1p-10);
  CHECK(k.meta == "hello world");
  REQUIRE(k.tensors.size() == 2);
  CHECK(k.tensors[0].values == std::vector<double>{1, 3, -2.5, 4});
  CHECK(k.tensors[1].name == "b");

  const auto check = [](const std::string& text, std::initializer_list<std::string> parts) {
    std::istringstream bad(text);
    const std::string msg = error_message([&] { (void)nn::read_checkpoint(bad); });
    INFO(msg);
    CHECK(msg.starts_with("semfocus::nn::read_checkpoint: "));
    for (const std::string& p : parts) CHECK(contains(msg, p));
  };
  check("", {"'semfocus-checkpoint'"});
  check(replaced(good, "semfocus-checkpoint", "semfocus-checkpiont"),
        {"'semfocus-checkpoint'", "'semfocus-checkpiont'"});
  check(replaced(good, "checkpoint 1", "checkpoint 2"), {"version", "'2'"});
  check(replaced(good, "mish", "swish"), {"activation", "'swish'"});
  check(replaced(good, "0x1p-10", "nan"), {"ln_eps", "'nan'"});
  check(replaced(good, "1 8 2 6", "0 8 2 6"), {"config: ", "blocks", "got 3, 2, 0, 8, 2, 6"});
  check(replaced(good, "8 2 6 mish 0x1p-10", "8 2 6 mish -1"), {"config", "ln_eps"});
  check(replaced(good, " 7\n", " x\n"), {"seed"});
  check(replaced(good, " 7\n", " -1\n"), {"seed", "'-1'"});
  check(replaced(good, " 7\n", " 18446744073709551616\n"), {"seed", "2^64"});
  check(replaced(good, "w 2 2", "w 4000000000000000000 4000000000000000000"),
        {"'w'", "implausible shape"});
  check(replaced(good, "-2.5 4\nb 1 1", "-2.5\nb 1 1"), {"tensor 'w'", "'b'"});
  check(replaced(good, "tensors 2", "tensors -1"), {"tensors count"});
  check(good.substr(0, good.find("-2.5")), {"'w'", "truncated"});
  check(replaced(good, "-2.5", "nan"), {"finite", "'nan'"});
  check(replaced(good, "-2.5", "abc"), {"finite", "'abc'"});
  check(replaced(good, "-2.5", "inf"), {"finite", "'inf'"});
  check(replaced(good, "-2.5", "1e999"), {"finite", "'1e999'"});
  check(replaced(good, "-2.5", "2.5x"), {"'2.5x'"});
  check(replaced(good, "end\n", ""), {"'end'"});
  check(replaced(good, "end\n", "END\n"), {"'end'", "'END'"});
}

TEST_CASE("checkpoint: restore and write_checkpoint name the mismatch") {
  float_model a(small_config(7), semfocus::dense{}), b(small_config(8), semfocus::dense{});
  const auto pa = a.parameters(), pb = b.parameters();
  std::stringstream io;
  nn::write_checkpoint(io, a.config(), pa);
  const nn::checkpoint good = nn::read_checkpoint(io);
  const std::size_t n = pa.size();

  nn::checkpoint fewer = good;
  fewer.tensors.pop_back();
  check_error([&] { nn::restore(pb, fewer); },
              {"semfocus::nn::restore: the checkpoint has " + std::to_string(n - 1) +
               " tensors, the model expects " + std::to_string(n)});
  CHECK_FALSE(same_bits(pa[0]->value, pb[0]->value));  // nothing copied

  nn::checkpoint renamed = good;
  renamed.tensors[2].name = "bogus.weight";
  check_error([&] { nn::restore(pb, renamed); },
              {"tensor 2 must be named '" + pa[2]->name + "', got 'bogus.weight'"});
  CHECK_FALSE(same_bits(pa[0]->value, pb[0]->value));  // all checked before any copy

  nn::checkpoint reshaped = good;
  nn::stored_tensor& s = reshaped.tensors[1];
  s.rows += 1;
  s.values.resize(std::size_t(s.rows * s.cols));
  check_error([&] { nn::restore(pb, reshaped); },
              {"'" + pa[1]->name + "'",
               "got [" + std::to_string(s.rows) + ", " + std::to_string(s.cols) + "]"});

  std::vector<nn::parameter<double>> ps = {{"ok", 1, 1}, {"has space", 1, 1}};
  std::ostringstream out;
  const auto write = [&] { nn::write_checkpoint(out, a.config(), pointers(ps)); };
  check_error(write, {"semfocus::nn::write_checkpoint", "without whitespace, got 'has space'"});
  ps[1].name.clear();
  check_error(write, {"got ''"});
  std::ostringstream failed;
  failed.setstate(std::ios::badbit);
  check_error([&] { nn::write_checkpoint(failed, a.config(), pa); }, {"stream failed"});
}

TEST_CASE("landscape: normalized_direction has each parameter's norm") {
  SUBCASE("float model") {
    float_model m(small_config(7), semfocus::dense{});
    const auto params = m.parameters();
    nn::rng gen(11), same(11), other(12);
    const auto d = nn::normalized_direction(params, gen);
    const auto again = nn::normalized_direction(params, same);
    const auto different = nn::normalized_direction(params, other);
    const auto next = nn::normalized_direction(params, gen);
    REQUIRE(d.size() == params.size());
    int zero_blocks = 0;
    for (std::size_t t = 0; t < params.size(); ++t) {
      INFO(params[t]->name);
      REQUIRE(d[t].rows() == params[t]->value.rows());
      REQUIRE(d[t].cols() == params[t]->value.cols());
      const double norm = params[t]->value.norm();
      CHECK(same_bits(d[t], again[t]));
      if (norm == 0) {
        ++zero_blocks;
        CHECK((d[t].array() == 0.0f).all());
        continue;
      }
      CHECK(double(d[t].norm()) == doctest::Approx(norm).epsilon(1e-5));
      CHECK_FALSE(same_bits(d[t], different[t]));
      CHECK_FALSE(same_bits(d[t], next[t]));
    }
    CHECK(zero_blocks == 1);  // the classifier bias starts at 0
  }
  SUBCASE("double list, against the rng's normal draws") {
    std::vector<nn::parameter<double>> ps = {{"a", 3, 2}, {"z", 1, 4}, {"c", 2, 2}};
    ps[0].value = mat(3, 2, {1, -2, 0.5, 3, 0, 0.25});
    ps[2].value = mat(2, 2, {1e-3, 0, 0, -2e-3});
    nn::rng gen(5), ref(5);
    const auto d = nn::normalized_direction(pointers(ps), gen);
    REQUIRE(d.size() == 3);
    for (std::size_t t = 0; t < ps.size(); ++t) {
      md raw(ps[t].value.rows(), ps[t].value.cols());
      for (index_t x = 0; x < raw.size(); ++x) raw.data()[x] = ref.normal();
      const double norm = ps[t].value.norm();
      CHECK(d[t].norm() == doctest::Approx(norm).epsilon(1e-13));
      const md expected = raw * (norm / raw.norm());
      CHECK((d[t] - expected).cwiseAbs().maxCoeff() <= 1e-15 * (1 + norm));
    }
    CHECK((d[1].array() == 0.0).all());
  }
}

TEST_CASE("landscape: fill_landscape evaluates the loss at theta + a d1 + b d2") {
  std::vector<nn::parameter<double>> ps = {{"w", 2, 1}, {"b", 1, 1}};
  ps[0].value = mat(2, 1, {0.5, -1});
  ps[1].value = mat(1, 1, {2});
  ps[0].grad = mat(2, 1, {7, 8});
  const auto params = pointers(ps);
  const md w0 = ps[0].value, b0 = ps[1].value;
  const std::vector<md> d1 = {mat(2, 1, {1, 0}), mat(1, 1, {0.5})};
  const std::vector<md> d2 = {mat(2, 1, {0, 2}), mat(1, 1, {-1})};
  const auto L = [](double x, double y, double z) { return x * x + 3 * y * y + x * z + z; };
  int calls = 0;
  const auto loss = [&] {
    ++calls;
    return L(ps[0].value(0, 0), ps[0].value(1, 0), ps[1].value(0, 0));
  };
  const auto restored = [&] {
    return same_bits(ps[0].value, w0) && same_bits(ps[1].value, b0) &&
           same_bits(ps[0].grad, mat(2, 1, {7, 8}));
  };

  nn::landscape_grid g{4, 0.75, std::vector<double>(16, not_a_number)};
  for (index_t i = 0; i < 4; ++i) CHECK(g.coord(i) == -0.75 + 0.5 * double(i));
  CHECK(g.step() == 0.5);
  nn::fill_landscape(params, d1, d2, g, 0, 4, loss);
  CHECK(calls == 16);
  CHECK(restored());
  for (index_t ib = 0; ib < 4; ++ib)
    for (index_t ia = 0; ia < 4; ++ia) {
      const double a = -0.75 + 0.5 * double(ia), b = -0.75 + 0.5 * double(ib);
      CHECK(g.loss[std::size_t(ib * 4 + ia)] == g.at(ia, ib));
      CHECK(g.at(ia, ib) ==
            doctest::Approx(L(0.5 + a, -1 + 2 * b, 2 + 0.5 * a - b)).epsilon(1e-12));
    }

  SUBCASE("parameters are restored when the loss throws") {
    int n = 0;
    const auto throwing = [&] {
      if (++n == 5) throw std::runtime_error("boom");
      return loss();
    };
    CHECK_THROWS_AS(nn::fill_landscape(params, d1, d2, g, 0, 4, throwing), std::runtime_error);
    CHECK(n == 5);
    CHECK(restored());
  }
  SUBCASE("row ranges compose") {
    nn::landscape_grid whole{5, 1.0, std::vector<double>(25, not_a_number)}, split = whole,
                                                                             part = whole;
    nn::fill_landscape(params, d1, d2, whole, 0, 5, loss);
    nn::fill_landscape(params, d1, d2, split, 0, 2, loss);
    calls = 0;
    nn::fill_landscape(params, d1, d2, split, 5, 5, loss);
    CHECK(calls == 0);
    nn::fill_landscape(params, d1, d2, split, 2, 5, loss);
    CHECK(calls == 15);
    CHECK(split.loss == whole.loss);
    nn::fill_landscape(params, d1, d2, part, 1, 3, loss);
    for (std::size_t x = 0; x < 25; ++x)
      CHECK((x >= 5 && x < 15 ? part.loss[x] == whole.loss[x] : std::isnan(part.loss[x])));
    CHECK(restored());
  }
  SUBCASE("bad arguments are named") {
    calls = 0;
    const auto msg = [&](const std::vector<md>& a, const std::vector<md>& b, nn::landscape_grid gr,
                         index_t r0, index_t r1) {
      return error_message([&] { nn::fill_landscape(params, a, b, gr, r0, r1, loss); });
    };
    CHECK(contains(msg({d1[0]}, d2, g, 0, 4),
                   "semfocus::nn::fill_landscape: directions must have one block per parameter "
                   "(2), got 1 and 2"));
    CHECK(contains(msg(d1, {d2[0], d2[1], d2[1]}, g, 0, 4), "got 2 and 3"));
    CHECK(contains(msg(d1, {d2[0], mat(1, 2, {0, 0})}, g, 0, 4), "parameter 'b'"));
    CHECK(contains(msg({mat(1, 2, {0, 0}), d1[1]}, d2, g, 0, 4), "parameter 'w'"));
    CHECK(contains(msg(d1, d2, {1, 1.0, {0.0}}, 0, 1), "grid.points must be >= 2, got 1"));
    for (const double e : {0.0, -1.0, infinity, not_a_number})
      CHECK(contains(msg(d1, d2, {4, e, std::vector<double>(16)}, 0, 4), "grid.extent"));
    CHECK(contains(msg(d1, d2, {4, 1.0, std::vector<double>(15)}, 0, 4), "grid.loss"));
    CHECK(contains(msg(d1, d2, g, -1, 2), "row_begin <= row_end <= 4, got [-1, 2)"));
    CHECK(contains(msg(d1, d2, g, 3, 2), "got [3, 2)"));
    CHECK(contains(msg(d1, d2, g, 0, 5), "got [0, 5)"));
    CHECK(calls == 0);
    CHECK(restored());
  }
}

TEST_CASE("landscape: neighbour_lipschitz against hand grids") {
  // G = 3, e = 1: h = 1 and the 12 neighbour differences are 1 2 4 5 7 8 (rows), 6 9 12 15 18 21.
  const nn::landscape_grid hand{3, 1.0, {0, 1, 3, 6, 10, 15, 21, 28, 36}};
  const std::vector<double> radii = {100, 1};
  const auto h = nn::neighbour_lipschitz(hand, radii);
  REQUIRE(h.size() == 2);
  CHECK(h[0].radius == 100);
  CHECK(h[0].pairs == 12);
  const double all[] = {7.5, 12.75, 19.35, 20.67}, plus[] = {7, 11.25, 16.65, 17.73};
  CHECK(h[1].pairs == 4);  // the centre and its 4 neighbours: ratios 4 5 9 18
  for (std::size_t x = 0; x < 4; ++x) {
    CHECK(h[0].quantile[x] == doctest::Approx(all[x]).epsilon(1e-12));
    CHECK(h[1].quantile[x] == doctest::Approx(plus[x]).epsilon(1e-12));
  }
  CHECK(nn::landscape_levels == std::array<double, 4>{0.50, 0.75, 0.95, 0.99});

  // L(a, b) = 3 a - 0.5 b on G = 5, e = 1: horizontal ratios 3, vertical 0.5.
  nn::landscape_grid lin{5, 1.0, std::vector<double>(25)};
  for (index_t ib = 0; ib < 5; ++ib)
    for (index_t ia = 0; ia < 5; ++ia)
      lin.loss[std::size_t(ib * 5 + ia)] =
          3 * (-1 + 0.5 * double(ia)) - 0.5 * (-1 + 0.5 * double(ib));
  const std::vector<double> rs = {0, 0.5, 1, 1.2, 10};
  const auto l = nn::neighbour_lipschitz(lin, rs);
  REQUIRE(l.size() == rs.size());
  CHECK(l[0].pairs == 0);  // only the origin
  for (const double q : l[0].quantile) CHECK(std::isnan(q));
  CHECK(l[1].pairs == 4);
  CHECK(l[2].pairs == 16);  // 8 horizontal: 4 on b = 0, 2 on each of b = +-0.5; 8 vertical
  CHECK(l[4].pairs == 2 * 5 * 4);
  for (std::size_t r = 0; r < rs.size(); ++r) {
    INFO("radius " << rs[r]);
    const std::vector<double> ratios = brute_ratios(lin, rs[r]);
    CHECK(l[r].radius == rs[r]);
    CHECK(l[r].pairs == index_t(ratios.size()));
    for (const double v : ratios) CHECK((v == doctest::Approx(3) || v == doctest::Approx(0.5)));
    for (std::size_t x = 0; x < 4 && !ratios.empty(); ++x)
      CHECK(l[r].quantile[x] == doctest::Approx(type7(ratios, nn::landscape_levels[x])));
  }
  for (std::size_t x = 0; x < 4; ++x)
    CHECK(l[4].quantile[x] == doctest::Approx(x == 0 ? 1.75 : 3.0).epsilon(1e-12));

  const auto msg = [](const nn::landscape_grid& g, std::vector<double> r) {
    return error_message([&] { (void)nn::neighbour_lipschitz(g, r); });
  };
  nn::landscape_grid bad = lin;
  bad.loss[7] = infinity;
  CHECK(contains(msg(bad, {1}),
                 "semfocus::nn::neighbour_lipschitz: every grid loss must be finite, got inf"));
  bad.loss[7] = not_a_number;
  CHECK(contains(msg(bad, {1}), "finite"));
  CHECK(contains(msg(lin, {1, -0.5}), "radii must be >= 0, got -0.5"));
  CHECK(contains(msg(lin, {not_a_number}), "radii must be >= 0"));
  CHECK(contains(msg({5, 1.0, std::vector<double>(24)}, {1}), "G x G with G >= 2"));
  CHECK(contains(msg({1, 1.0, {0.0}}, {1}), "G x G with G >= 2"));
}

// A hand-built grid with e <= 0 or non-finite gives h <= 0 or NaN: negative or NaN "Lipschitz"
// ratios (and NaN handed to std::sort) unless the extent is checked as fill_landscape does.
TEST_CASE("landscape: neighbour_lipschitz rejects a grid with a bad extent") {
  const std::vector<double> radii = {10};
  for (const double e : {0.0, -1.0, infinity, not_a_number}) {
    INFO("extent " << e);
    const nn::landscape_grid g{3, e, {0, 1, 3, 6, 10, 15, 21, 28, 36}};
    check_error([&] { (void)nn::neighbour_lipschitz(g, radii); },
                {"semfocus::nn::neighbour_lipschitz", "extent"});
  }
}

TEST_CASE("landscape: a real model's grid is centred on its loss") {
  const nn::model_config c{
      .vocab = 3, .classes = 2, .blocks = 1, .d = 4, .heads = 1, .d_mlp = 4, .seed = 3};
  nn::encoder_classifier<semfocus::top_k, semfocus::exec::reference_t, double> m(
      c, semfocus::top_k(2));
  const std::vector<std::vector<int>> tokens = {{0, 1, 2, 1}, {2, 2, 0, 1}, {1, 0, 0, 2}};
  const std::vector<int> labels = {0, 1, 1};
  const double loss0 = m.loss(tokens, labels);
  const auto params = m.parameters();
  std::vector<md> theta;
  for (const auto* p : params) theta.push_back(p->value);
  nn::rng gen(5);
  const auto d1 = nn::normalized_direction(params, gen), d2 = nn::normalized_direction(params, gen);
  nn::landscape_grid g{5, 1.0, std::vector<double>(25, not_a_number)};
  nn::fill_landscape(params, d1, d2, g, 0, 5, [&] { return m.loss(tokens, labels); });
  CHECK(g.at(2, 2) == loss0);
  for (std::size_t t = 0; t < params.size(); ++t) CHECK(same_bits(params[t]->value, theta[t]));
  CHECK(m.loss(tokens, labels) == loss0);
  for (const double v : g.loss) CHECK(std::isfinite(v));
  CHECK(*std::max_element(g.loss.begin(), g.loss.end()) >
        *std::min_element(g.loss.begin(), g.loss.end()));
  const std::vector<double> radii = {0.5, 1, 2};
  const auto l = nn::neighbour_lipschitz(g, radii);
  CHECK(l[0].pairs == 4);
  CHECK(l[1].pairs == 16);
  CHECK(l[2].pairs == 40);
  for (const auto& e : l) {
    CHECK(std::is_sorted(e.quantile.begin(), e.quantile.end()));
    CHECK(e.quantile[0] > 0);
  }
}
