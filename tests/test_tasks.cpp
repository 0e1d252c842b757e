// SPDX-License-Identifier: MIT
// The task generators of semfocus::tasks: each labeller against its definition on hand-written
// sequences, every generated example against an evaluator written independently here, shapes and
// token ranges, label balance, reproducibility (seeds, independent splits, prefix property), the
// registry, padding, and the errors for bad options.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "semfocus/tasks/tasks.hpp"
#include "support/errors.hpp"

using namespace semfocus::tasks;
using semfocus::index_t;
using semfocus::test::contains;
using semfocus::test::error_message;

namespace {

// ---- Independent evaluators (written from the definitions, not from the library) ----

int ref_parity(const std::vector<int>& t) {
  return static_cast<int>(std::count(t.begin(), t.end(), 1) % 2);
}

int ref_even_pairs(const std::vector<int>& t) { return t.front() != t.back() ? 1 : 0; }

/// Missing Duplicates: the hidden bit is the other copy's bit; -1 if malformed.
int ref_missing(const std::vector<int>& t) {
  const std::size_t half = t.size() / 2;
  const auto it = std::find(t.begin(), t.end(), 2);
  if (it == t.end() || std::count(t.begin(), t.end(), 2) != 1) return -1;
  const auto p = static_cast<std::size_t>(it - t.begin());
  for (std::size_t i = 0; i < half; ++i)
    if (i != p % half && t[i] != t[i + half]) return -1;
  return t[(p + half) % t.size()];
}

int ref_cycle(const std::vector<int>& t) {
  int up = 0, down = 0;
  for (const int m : t) {
    up += m == 1;
    down += m == 2;
  }
  return ((up - down) % 5 + 5) % 5;
}

/// Stack: replays the actions on a string; 2 for empty.
int ref_stack(const std::vector<int>& t) {
  std::string st;
  for (const int a : t) {
    if (a == 0 || a == 1) st += char('0' + a);
    if (a == 2 && !st.empty()) st.erase(st.size() - 1);
    if (a == 3 || a == 4) st += char('0' + a - 3);
  }
  return st.empty() ? 2 : st.back() - '0';
}

/// Deletang's grammar only: E := d | - d | ( d ) | ( - d ) | ( E op E ); returns the value mod 5
/// (x = `x`), or -1 when the tokens leave this grammar. `p` advances.
int ref_deletang(const std::vector<int>& t, std::size_t& p, int x) {
  const auto at = [&](std::size_t i) { return i < t.size() ? t[i] : -1; };
  const auto number = [&](int tok) { return tok >= 0 && tok <= 4 ? tok : tok == 10 ? x : -1; };
  if (number(at(p)) >= 0) return number(t[p++]);
  if (at(p) == 6 && number(at(p + 1)) >= 0) {
    p += 2;
    return (5 - number(t[p - 1])) % 5;
  }
  if (at(p) != 8) return -1;
  ++p;
  if (number(at(p)) >= 0 && at(p + 1) == 9) {
    p += 2;
    return number(t[p - 2]);
  }
  if (at(p) == 6 && number(at(p + 1)) >= 0 && at(p + 2) == 9) {
    p += 3;
    return (5 - number(t[p - 2])) % 5;
  }
  const int a = ref_deletang(t, p, x);
  const int op = at(p++);
  const int b = ref_deletang(t, p, x);
  if (a < 0 || b < 0 || at(p++) != 9) return -1;
  if (op == 5) return (a + b) % 5;
  if (op == 6) return (a - b + 5) % 5;
  if (op == 7) return (a * b) % 5;
  return -1;
}

int ref_expression(const std::vector<int>& t, int x = -1) {
  std::size_t p = 0;
  const int v = ref_deletang(t, p, x);
  return p == t.size() ? v : -1;
}

/// ListOps: recursive, LRA's int(np.median) for MED. `p` advances; -1 if malformed.
int ref_listops(const std::vector<int>& t, std::size_t& p) {
  if (p >= t.size()) return -1;
  const int tok = t[p++];
  if (tok <= 9) return tok;
  std::vector<int> args;
  while (p < t.size() && t[p] != 14) args.push_back(ref_listops(t, p));
  if (p++ >= t.size() || args.empty()) return -1;
  if (std::find(args.begin(), args.end(), -1) != args.end()) return -1;
  std::sort(args.begin(), args.end());
  const std::size_t k = args.size();
  if (tok == 10) return args.front();
  if (tok == 11) return args.back();
  if (tok == 12) return k % 2 ? args[k / 2] : (args[k / 2 - 1] + args[k / 2]) / 2;
  int sum = 0;
  for (const int a : args) sum += a;
  return sum % 10;
}

/// The label an independent evaluator gives to `e` of task `name` (-1: malformed).
int reference_label(const std::string& name, const example& e) {
  const std::vector<int>& t = e.tokens;
  if (name == "parity") return ref_parity(t);
  if (name == "even_pairs") return ref_even_pairs(t);
  if (name == "missing_duplicates") return ref_missing(t);
  if (name == "cycle_navigation") return ref_cycle(t);
  if (name == "stack_manipulation") return ref_stack(t);
  if (name == "modular_arithmetic") return ref_expression(t);
  if (name == "listops") {
    std::size_t p = 0;
    const int v = ref_listops(t, p);
    return p == t.size() ? v : -1;
  }
  // solve_equation: "E = v", E in Deletang's grammar with one x; brute force over x.
  if (t.size() < 3 || t[t.size() - 2] != 11 || t.back() > 4) return -1;
  if (std::count(t.begin(), t.end(), 10) != 1) return -1;
  const std::vector<int> lhs(t.begin(), t.end() - 2);
  int solution = -1, count = 0;
  for (int x = 0; x < 5; ++x)
    if (ref_expression(lhs, x) == t.back()) {
      solution = x;
      ++count;
    }
  return count == 1 ? solution : -1;
}

/// The library's own labeller for `e` of task `name`.
int library_label(const std::string& name, const example& e) {
  if (name == "parity") return parity_label(e.tokens);
  if (name == "even_pairs") return even_pairs_label(e.tokens);
  if (name == "missing_duplicates") return missing_duplicates_label(e.tokens);
  if (name == "cycle_navigation") return cycle_navigation_label(e.tokens);
  if (name == "stack_manipulation") return stack_manipulation_label(e.tokens);
  if (name == "modular_arithmetic") return modular_arithmetic_value(e.tokens);
  if (name == "solve_equation") return solve_equation_label(e.tokens);
  return listops_value(e.tokens);
}

/// Small requests: ListOps is slow to generate, the others are cheap.
task_options small(const std::string& name, std::uint64_t seed = 7) {
  task_options o;
  o.seed = seed;
  if (name == "listops") {
    o.train = 150;
    o.test = 50;
  } else {
    o.train = 1000;
    o.test = 300;
  }
  return o;
}

bool same(const std::vector<example>& a, const std::vector<example>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (a[i].tokens != b[i].tokens || a[i].label != b[i].label) return false;
  return true;
}

}  // namespace

TEST_CASE("tasks: registry names and lookup") {
  const std::vector<std::string> expected = {"parity",
                                             "even_pairs",
                                             "missing_duplicates",
                                             "stack_manipulation",
                                             "modular_arithmetic",
                                             "solve_equation",
                                             "cycle_navigation",
                                             "listops"};
  CHECK(task_names() == expected);
  for (const std::string& name : task_names()) {
    task_options o = small(name);
    o.train = 2;
    o.test = 1;
    const dataset d = make_task(name, o);
    CHECK(d.name == name);
    CHECK(same(task_generator(name)(o).train, d.train));
  }
  const std::string msg = error_message([] { (void)task_generator("parity_check"); });
  CHECK(contains(msg, "unknown task 'parity_check'"));
  for (const std::string& name : expected) CHECK(contains(msg, name));
  CHECK(contains(error_message([] { (void)make_task("ListOps"); }), "valid tasks"));
}

TEST_CASE("tasks: binary labellers on hand-written sequences") {
  CHECK(parity_label(std::vector<int>{1, 0, 1, 1}) == 1);
  CHECK(parity_label(std::vector<int>{1, 1, 0, 0}) == 0);
  CHECK(parity_label(std::vector<int>{0}) == 0);
  CHECK(even_pairs_label(std::vector<int>{0, 1, 1, 0}) == 0);     // 2 changes
  CHECK(even_pairs_label(std::vector<int>{0, 1, 0, 0, 1}) == 1);  // 3 changes
  CHECK(even_pairs_label(std::vector<int>{1}) == 0);
  const std::vector<std::string> md = {"0", "1", "?"};
  CHECK(missing_duplicates_label(encode(md, "0 1 1 0 ? 1")) == 1);
  CHECK(missing_duplicates_label(encode(md, "? 0 1 1 0 1")) == 1);
  CHECK(missing_duplicates_label(encode(md, "0 1 1 0 1 ?")) == 1);
  CHECK(missing_duplicates_label(encode(md, "1 ?")) == 1);
  CHECK(contains(error_message([&] { (void)missing_duplicates_label(encode(md, "0 1 1 1 ? 1")); }),
                 "copies differ"));
  CHECK(contains(error_message([&] { (void)missing_duplicates_label(encode(md, "0 1 0 1")); }),
                 "exactly one missing"));
  CHECK(contains(error_message([&] { (void)missing_duplicates_label(encode(md, "0 ? 0")); }),
                 "even"));
  CHECK(contains(error_message([] { (void)parity_label(std::vector<int>{0, 2}); }), "token 2"));
  CHECK(contains(error_message([] { (void)parity_label(std::vector<int>{}); }), "at least 1"));
}

TEST_CASE("tasks: cycle navigation and stack manipulation labellers") {
  const std::vector<std::string> cyc = {"0", "+1", "-1"};
  CHECK(cycle_navigation_label(encode(cyc, "+1 +1 -1 0")) == 1);
  CHECK(cycle_navigation_label(encode(cyc, "-1")) == 4);
  CHECK(cycle_navigation_label(encode(cyc, "+1 +1 +1 +1 +1 0")) == 0);
  CHECK(cycle_navigation_label(encode(cyc, "+1 -1 0 -1 -1")) == 3);  // Deletang's example: -2
  const std::vector<std::string> st = {"0", "1", "POP", "PUSH0", "PUSH1"};
  CHECK(stack_manipulation_label(encode(st, "0 1 1 0 PUSH1 POP POP")) == 1);  // Deletang's
  CHECK(stack_manipulation_label(encode(st, "1 1 0 POP POP POP")) == stack_ops::empty);
  CHECK(stack_manipulation_label(encode(st, "1 POP POP PUSH0")) == 0);  // POP on empty: no-op
  CHECK(stack_manipulation_label(encode(st, "0 POP POP POP PUSH1 PUSH0 POP")) == 1);
  CHECK(stack_manipulation_label(encode(st, "1 POP")) == 2);
  CHECK(contains(error_message([&] { (void)stack_manipulation_label(encode(st, "1 POP 0")); }),
                 "after an action"));
}

TEST_CASE("tasks: modular arithmetic evaluator on hand-written expressions") {
  const std::vector<std::string> names =
      make_modular_arithmetic({.train = 0, .test = 0}).token_names;
  const auto value = [&](const char* text) {
    return modular_arithmetic_value(encode(names, text));
  };
  CHECK(value("( 3 + 4 ) * 2") == 4);  // 14 mod 5
  CHECK(value("3 + 4 * 2") == 1);      // precedence: 11 mod 5
  CHECK(value("2 - 3 - 4") == 0);      // left associative: -5
  CHECK(value("- 3") == 2);
  CHECK(value("( - 4 )") == 1);
  CHECK(value("( 3 - - 2 )") == 0);
  CHECK(value("( ( 4 * 4 ) * ( - 1 + 3 ) )") == 2);  // 32 mod 5
  CHECK(value("4") == 4);
  for (const char* bad : {"( 3 + 4", "3 4", "+", "3 +", "( )", "3 )"})
    CHECK(contains(error_message([&] { (void)value(bad); }), "modular_arithmetic_value"));
  const std::vector<std::string> eq = make_solve_equation({.train = 0, .test = 0}).token_names;
  CHECK(contains(error_message([&] { (void)modular_arithmetic_value(encode(eq, "x + 1")); }),
                 "unknown x"));
  // The generator's own shapes: lengths 1 to 4 are d, - d, ( d ), ( - d ).
  for (index_t len = 1; len <= 4; ++len) {
    const dataset d = make_modular_arithmetic({.seed = 1, .train = 20, .test = 0, .length = len});
    for (const example& e : d.train) {
      REQUIRE(static_cast<index_t>(e.tokens.size()) == len);
      const int digit = e.tokens[static_cast<std::size_t>(len / 2)];
      CHECK(digit < 5);
      const std::vector<std::vector<int>> shapes = {
          {digit},
          {arithmetic::minus, digit},
          {arithmetic::open, digit, arithmetic::close},
          {arithmetic::open, arithmetic::minus, digit, arithmetic::close}};
      CHECK(e.tokens == shapes[static_cast<std::size_t>(len - 1)]);
      CHECK(e.label == (len % 2 == 0 ? (5 - digit) % 5 : digit));
    }
  }
}

TEST_CASE("tasks: solve equation solutions by brute force on hand-written equations") {
  const std::vector<std::string> names = make_solve_equation({.train = 0, .test = 0}).token_names;
  const auto sols = [&](const char* text) { return solve_equation_solutions(encode(names, text)); };
  CHECK(sols("x + 2 = 4") == std::vector<int>{2});
  CHECK(sols("( 2 * x ) = 1") == std::vector<int>{3});
  CHECK(sols("( - x ) = 1") == std::vector<int>{4});
  CHECK(sols("( ( x * 0 ) + 1 ) = 1") == std::vector<int>{0, 1, 2, 3, 4});
  CHECK(sols("( x * ( 2 - 2 ) ) = 1").empty());
  CHECK(solve_equation_label(encode(names, "( ( 3 * x ) - 1 ) = 0")) == 2);
  CHECK(contains(error_message([&] { (void)solve_equation_label(encode(names, "x * 0 = 0")); }),
                 "5 solutions"));
  CHECK(contains(error_message([&] { (void)sols("x + 2"); }), "exactly one '='"));
  CHECK(contains(error_message([&] { (void)sols("x = 1 = 1"); }), "exactly one '='"));
}

TEST_CASE("tasks: listops evaluator on hand-written expressions") {
  const std::vector<std::string> names =
      make_listops({.train = 0, .test = 0}, listops_options{}).token_names;
  const auto value = [&](const char* text) { return listops_value(encode(names, text)); };
  CHECK(value("[MAX 2 9 [MIN 4 7 ] 0 ]") == 9);
  CHECK(value("[MIN 3 [MAX 1 2 ] 5 ]") == 2);
  CHECK(value("[MED 3 1 2 ]") == 2);
  CHECK(value("[MED 1 4 ]") == 2);      // LRA: int(np.median([1, 4])) = int(2.5)
  CHECK(value("[MED 9 0 1 8 ]") == 4);  // sorted 0 1 8 9: int(4.5)
  CHECK(value("[SM 5 6 7 ]") == 8);     // 18 mod 10
  CHECK(value("[SM [MAX 9 9 ] [MED 2 ] 1 ]") == 2);
  CHECK(value("7") == 7);
  CHECK(value("[MIN 4 6 ] <pad> <pad>") == 4);  // trailing padding ignored
  for (const char* bad : {"[MIN ]", "[MIN 1", "1 2", "]", "[MIN 1 <pad> 2 ]", "[MIN 1 ] ]", ""})
    CHECK(contains(error_message([&] { (void)value(bad); }), "listops_value"));
}

TEST_CASE("tasks: every generated example matches an independent evaluator") {
  for (const std::string& name : task_names()) {
    CAPTURE(name);
    const dataset d = make_task(name, small(name));
    for (const auto* split : {&d.train, &d.test})
      for (const example& e : *split) {
        const int ref = reference_label(name, e);
        CHECK(ref == e.label);
        CHECK(library_label(name, e) == e.label);
        if (ref != e.label) {
          MESSAGE(decode(d.token_names, e.tokens));
          break;
        }
      }
  }
}

TEST_CASE("tasks: shapes lengths and token ranges") {
  for (const std::string& name : task_names()) {
    CAPTURE(name);
    const task_options o = small(name);
    const dataset d = make_task(name, o);
    CHECK(static_cast<index_t>(d.train.size()) == o.train);
    CHECK(static_cast<index_t>(d.test.size()) == o.test);
    CHECK(static_cast<int>(d.token_names.size()) == d.vocab_size);
    const bool listops = name == "listops";
    CHECK(d.max_length == (listops ? 599 : 40));
    CHECK(d.pad_token == (listops ? listops::pad : -1));
    std::vector<int> used(static_cast<std::size_t>(d.vocab_size), 0);
    int out_of_range = 0;
    for (const auto* split : {&d.train, &d.test})
      for (const example& e : *split) {
        const auto n = static_cast<index_t>(e.tokens.size());
        if (listops) {
          CHECK(n > 500);
          CHECK(n < 600);
        } else {
          CHECK(n == 40);
        }
        CHECK(e.label >= 0);
        CHECK(e.label < d.num_classes);
        for (const int t : e.tokens) {
          if (t >= 0 && t < d.vocab_size)
            ++used[static_cast<std::size_t>(t)];
          else
            ++out_of_range;
        }
      }
    CHECK(out_of_range == 0);
    // Every token but the padding occurs (the vocabulary is tight).
    for (int t = 0; t < d.vocab_size; ++t)
      if (t != d.pad_token) CHECK(used[static_cast<std::size_t>(t)] > 0);
    if (listops) CHECK(used[listops::pad] == 0);
  }
  // Non-default lengths.
  CHECK(make_parity({.train = 3, .test = 0, .length = 7}).train[2].tokens.size() == 7);
  CHECK(make_missing_duplicates({.train = 3, .test = 0, .length = 2}).max_length == 2);
  CHECK(make_stack_manipulation({.train = 3, .test = 0, .length = 2}).train[0].tokens[1] >= 2);
  CHECK(make_solve_equation({.train = 5, .test = 0, .length = 3}).train[4].tokens[0] ==
        arithmetic::unknown);
  const dataset short_lists = make_listops({.seed = 2, .train = 20, .test = 0, .length = 60});
  CHECK(short_lists.max_length == 59);
  for (const example& e : short_lists.train) {
    CHECK(e.tokens.size() > 50);
    CHECK(e.tokens.size() < 60);
  }
}

TEST_CASE("tasks: label balance at 5000 examples") {
  for (const std::string& name : task_names()) {
    if (name == "listops") continue;
    CAPTURE(name);
    const dataset d = make_task(name, {.seed = 11, .train = 5000, .test = 0});
    const std::vector<index_t> counts = label_counts(d.train, d.num_classes);
    std::vector<double> share;
    for (const index_t c : counts) share.push_back(double(c) / 5000.0);
    CAPTURE(share);
    if (d.num_classes == 2 || name == "stack_manipulation") {
      // Binary tasks, and the two real classes of Stack Manipulation.
      CHECK(share[0] >= 0.45);
      CHECK(share[0] <= 0.55);
      CHECK(share[1] >= 0.45);
      CHECK(share[1] <= 0.55);
    } else {
      for (const double s : share) CHECK(s >= 0.5 / d.num_classes);
    }
    if (name == "stack_manipulation") CHECK(share[2] < 0.005);  // p(empty) = 2.7e-4
    if (name == "modular_arithmetic") CHECK(share[0] == doctest::Approx(0.30).epsilon(0.1));
  }
  // ListOps (natural distribution; a few hundred trees): 0 and 9 the most frequent.
  const dataset d = make_listops({.seed = 11, .train = 400, .test = 0});
  const std::vector<index_t> counts = label_counts(d.train, 10);
  CAPTURE(counts);
  for (const index_t c : counts) CHECK(c >= 16);  // >= 4%
  CHECK(counts[0] >= 40);
  CHECK(counts[9] >= 40);
}

TEST_CASE("tasks: reproducibility seeds splits and prefixes") {
  for (const std::string& name : task_names()) {
    CAPTURE(name);
    const task_options o = small(name, 3);
    const dataset a = make_task(name, o);
    const dataset b = make_task(name, o);
    CHECK(same(a.train, b.train));
    CHECK(same(a.test, b.test));
    task_options other = o;
    other.seed = 4;
    const dataset c = make_task(name, other);
    CHECK_FALSE(same(a.train, c.train));
    CHECK_FALSE(same(a.test, c.test));
    // Train and test come from different streams.
    const std::vector<example> head(a.train.begin(), a.train.begin() + o.test);
    CHECK_FALSE(same(head, a.test));
    // Prefix property: fewer examples are the first ones of a larger request; the held-out set
    // does not depend on the training count.
    task_options fewer = o;
    fewer.train = 10;
    fewer.test = o.test / 2;
    const dataset f = make_task(name, fewer);
    CHECK(same(f.train, std::vector<example>(a.train.begin(), a.train.begin() + 10)));
    CHECK(same(f.test, std::vector<example>(a.test.begin(), a.test.begin() + fewer.test)));
    task_options no_train = o;
    no_train.train = 0;
    CHECK(same(make_task(name, no_train).test, a.test));
  }
  // Golden value: the stream is std::mt19937_64 seeded by splitmix64, and bits are drawn by
  // rejection, so the data is the same with every standard library.
  // (A change here changes every dataset: update it only on purpose.)
  const dataset p = make_parity({.seed = 0, .train = 1, .test = 0});
  CHECK(decode(p.token_names, p.train[0].tokens) ==
        "1 1 0 0 0 1 0 1 1 0 1 1 0 0 0 1 0 1 1 1 0 0 1 0 0 1 1 0 0 0 0 1 0 0 0 0 0 1 0 1");
  const dataset c = make_cycle_navigation({.seed = 0, .train = 0, .test = 1});
  CHECK(decode(c.token_names, c.test[0].tokens) ==
        "+1 +1 0 -1 0 0 +1 +1 0 -1 0 +1 -1 -1 -1 -1 0 -1 +1 0 +1 +1 0 +1 0 +1 +1 +1 -1 0 0 +1 -1 "
        "-1 -1 -1 -1 -1 0 0");
}

TEST_CASE("tasks: bounded draws are uniform") {
  semfocus::tasks::detail::random_stream s(42);
  for (const int n : {1, 2, 3, 5, 7, 10}) {
    std::vector<int> hist(static_cast<std::size_t>(n), 0);
    const int draws = 6000 * n;
    for (int i = 0; i < draws; ++i) {
      const int v = s.below(n);
      REQUIRE(v >= 0);
      REQUIRE(v < n);
      ++hist[static_cast<std::size_t>(v)];
    }
    for (const int h : hist) CHECK(std::abs(h - 6000) < 400);  // > 5 standard deviations
  }
  CHECK(s.between(3, 3) == 3);
}

TEST_CASE("tasks: errors for bad options") {
  for (const std::string& name : task_names()) {
    CAPTURE(name);
    CHECK(contains(error_message([&] { (void)make_task(name, {.train = -1}); }),
                   "options.train must be >= 0"));
    CHECK(contains(error_message([&] { (void)make_task(name, {.test = -2}); }),
                   "options.test must be >= 0"));
    CHECK(
        contains(error_message([&] { (void)make_task(name, {.length = -1}); }), "options.length"));
  }
  const auto bad_length = [](const std::string& name, index_t length) {
    return contains(error_message([&] { (void)make_task(name, {.train = 1, .length = length}); }),
                    "options.length");
  };
  CHECK(bad_length("missing_duplicates", 1));
  CHECK(bad_length("missing_duplicates", 7));
  CHECK(bad_length("stack_manipulation", 1));
  CHECK(bad_length("solve_equation", 2));
  CHECK(bad_length("listops", 2));
  CHECK(bad_length("parity", index_t(1) << 30));
  CHECK(contains(error_message([] { (void)make_listops({.length = 40}, listops_options{}); }),
                 "options.length must be 0"));
  listops_options lo;
  lo.max_args = 1;
  CHECK(contains(error_message([&] { (void)make_listops({}, lo); }), "max_args"));
  lo = {};
  lo.max_length = lo.min_length + 1;
  CHECK(contains(error_message([&] { (void)make_listops({}, lo); }), "max_length"));
  lo = {};
  lo.max_depth = 0;
  CHECK(contains(error_message([&] { (void)make_listops({}, lo); }), "max_depth"));
  lo = {};
  lo.max_depth = 3;  // longest tree: 2 + 10 (2 + 10) = 122 tokens
  CHECK(contains(error_message([&] { (void)make_listops({}, lo); }), "no tree"));
}

TEST_CASE("tasks: pad_batch pads and masks") {
  std::vector<example> ex = {{{1, 2, 3}, 0}, {{4}, 1}, {{5, 6}, 2}};
  const padded_batch b = pad_batch(ex, 9);
  CHECK(b.batch == 3);
  CHECK(b.length == 3);
  CHECK(b.tokens == std::vector<int>{1, 2, 3, 4, 9, 9, 5, 6, 9});
  CHECK(b.mask == std::vector<std::uint8_t>{1, 1, 1, 1, 0, 0, 1, 1, 0});
  CHECK(b.labels == std::vector<int>{0, 1, 2});
  const std::vector<index_t> pick = {2, 1};
  const padded_batch c = pad_batch(ex, pick, 0, 4);
  CHECK(c.length == 4);
  CHECK(c.tokens == std::vector<int>{5, 6, 0, 0, 4, 0, 0, 0});
  CHECK(c.mask == std::vector<std::uint8_t>{1, 1, 0, 0, 1, 0, 0, 0});
  CHECK(c.labels == std::vector<int>{2, 1});
  CHECK(pad_batch(std::span<const example>{}, 0).tokens.empty());
  CHECK(contains(error_message([&] { (void)pad_batch(ex, 0, 2); }), "shorter than the longest"));
  CHECK(contains(error_message([&] { (void)pad_batch(ex, -1); }), "needs padding"));
  const std::vector<index_t> out_of_range = {3};
  CHECK(contains(error_message([&] { (void)pad_batch(ex, out_of_range, 0); }), "out of range"));
  // Equal lengths need no pad token; a ListOps batch pads with listops::pad.
  const dataset par = make_parity({.train = 4, .test = 0});
  CHECK(pad_batch(par.train, par.pad_token).length == 40);
  const dataset lo = make_listops({.seed = 5, .train = 4, .test = 0, .length = 120});
  const padded_batch lb = pad_batch(lo.train, lo.pad_token);
  for (index_t r = 0; r < lb.batch; ++r) {
    const auto row =
        std::span<const int>(lb.tokens).subspan(std::size_t(r * lb.length), std::size_t(lb.length));
    CHECK(listops_value(row) == lb.labels[std::size_t(r)]);
  }
}

TEST_CASE("tasks: encode decode and label counts") {
  const dataset d = make_stack_manipulation({.train = 5, .test = 0});
  for (const example& e : d.train)
    CHECK(encode(d.token_names, decode(d.token_names, e.tokens)) == e.tokens);
  CHECK(encode(d.token_names, "  1 0\tPOP  ") == std::vector<int>{1, 0, 2});
  CHECK(contains(error_message([&] { (void)encode(d.token_names, "1 PUSH2"); }),
                 "unknown token 'PUSH2'"));
  CHECK(contains(error_message([&] { (void)decode(d.token_names, std::vector<int>{5}); }),
                 "token 5"));
  std::vector<example> ex = {{{0}, 1}, {{0}, 1}, {{0}, 0}};
  CHECK(label_counts(ex, 3) == std::vector<index_t>{1, 2, 0});
  CHECK(contains(error_message([&] { (void)label_counts(ex, 1); }), "label 1"));
}
