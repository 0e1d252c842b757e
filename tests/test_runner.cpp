// SPDX-License-Identifier: MIT
// The experiment runner's statistics (examples/runner/stats.hpp) and figure files
// (examples/runner/plot.hpp) on hand-made inputs: quartiles of odd and even counts and with +inf,
// convergence epochs (also never reached), aggregation of runs of unequal length, the per-policy
// summary, CSV parsing and its errors, the Markdown table text, the band CSV and the gnuplot
// script. A smoke test of the pipeline through a real `train` process runs only when the
// environment variable SEMFOCUS_TRAIN_BINARY names the trainer; it is skipped otherwise.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <numeric>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "runner/plot.hpp"
#include "runner/policy_spec.hpp"
#include "runner/stats.hpp"
#include "runner/training.hpp"
#include "support/errors.hpp"

using namespace semfocus::runner;
using semfocus::test::contains;

namespace {

const double inf = std::numeric_limits<double>::infinity();

/// A run with the given training and held-out accuracies per epoch (epochs first, first + 1, ...);
/// losses are 1 - accuracy, lr 0.1, seconds = epoch.
run_data make_run(const std::vector<double>& train_acc, const std::vector<double>& test_acc,
                  int first = 1) {
  run_data r;
  r.source = "hand";
  for (std::size_t i = 0; i < train_acc.size(); ++i) {
    r.epoch.push_back(first + int(i));
    r.train_acc.push_back(train_acc[i]);
    r.test_acc.push_back(test_acc[i]);
    r.train_loss.push_back(1 - train_acc[i]);
    r.test_loss.push_back(1 - test_acc[i]);
    r.lr.push_back(0.1);
    r.seconds.push_back(double(first + int(i)));
  }
  return r;
}

/// The message of the csv_error thrown by parsing `text`, or "no error".
std::string csv_error_of(const std::string& text) {
  std::istringstream in(text);
  try {
    parse_run_csv(in, "runs/x.csv");
  } catch (const csv_error& e) {
    return e.what();
  }
  return "no error";
}

const std::string header = "epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds\n";

}  // namespace

TEST_CASE("runner: quartiles of odd and even counts are numpy's type 7") {
  const quartiles odd = quartiles_of({3, 1, 2});
  CHECK(odd.median == 2);
  CHECK(odd.q25 == 1.5);
  CHECK(odd.q75 == 2.5);
  const quartiles even = quartiles_of({4, 1, 3, 2});  // numpy.percentile: 1.75, 2.5, 3.25
  CHECK(even.median == 2.5);
  CHECK(even.q25 == doctest::Approx(1.75));
  CHECK(even.q75 == doctest::Approx(3.25));
  const quartiles five = quartiles_of({10, 50, 20, 40, 30});  // h = 1, 2, 3: order statistics
  CHECK(five.q25 == 20);
  CHECK(five.median == 30);
  CHECK(five.q75 == 40);
  const quartiles one = quartiles_of({7});
  CHECK((one.q25 == 7 && one.median == 7 && one.q75 == 7));
  CHECK(median_of({5, 1}) == 3);
}

TEST_CASE("runner: +inf sorts last and an interpolation that touches it gives +inf") {
  const quartiles q = quartiles_of({2, inf, 1});
  CHECK(q.q25 == 1.5);
  CHECK(q.median == 2);
  CHECK(q.q75 == inf);
  CHECK(median_of({1, inf}) == inf);        // even count, upper middle +inf
  CHECK(median_of({1, 2, 3, inf}) == 2.5);  // more than half finite: finite median
  CHECK(median_of({1, 2, inf, inf}) == inf);
  CHECK_THROWS_AS(quartiles_of({}), std::invalid_argument);
  CHECK_THROWS_AS(quartiles_of({1, std::nan("")}), std::invalid_argument);
  CHECK(stat_value(std::nan("")) == inf);
  CHECK(stat_value(0.25) == 0.25);
}

TEST_CASE("runner: convergence epoch is the first epoch with training accuracy >= 0.95") {
  CHECK(convergence_epoch(make_run({0.5, 0.9, 0.95, 0.99}, {0, 0, 0, 0})) == 3);
  CHECK(convergence_epoch(make_run({0.96, 0.5}, {0, 0})) == 1);
  CHECK(convergence_epoch(make_run({0.5, 0.949999, 0.9}, {0, 0, 0})) == -1);
  CHECK(convergence_epoch(make_run({0.5, 0.97}, {0, 0}, 10)) == 11);  // the epoch number, not row
  CHECK(convergence_epoch(make_run({0.5, 0.8}, {0, 0}), 0.8) == 2);
}

TEST_CASE("runner: parsing a run CSV") {
  std::istringstream in(header + "1,0.69,0.5,0.7,0.49,0.1,1.5\r\n2,nan,0.25,inf,0.5,0.09995,3\n\n");
  const run_data r = parse_run_csv(in, "a.csv");
  REQUIRE(r.size() == 2);
  CHECK(r.source == "a.csv");
  CHECK(r.epoch == std::vector<int>{1, 2});
  CHECK(r.train_loss[0] == 0.69);
  CHECK(std::isnan(r.train_loss[1]));
  CHECK(r.train_acc == std::vector<double>{0.5, 0.25});
  CHECK(r.test_loss[1] == inf);
  CHECK(r.test_acc == std::vector<double>{0.49, 0.5});
  CHECK(r.lr[1] == 0.09995);
  CHECK(r.seconds == std::vector<double>{1.5, 3});
  CHECK(&r.column(metric::test_loss) == &r.test_loss);
}

TEST_CASE("runner: malformed run CSVs name the file and the line") {
  CHECK(csv_error_of("") == "runs/x.csv:1: empty file, expected the header line");
  CHECK(csv_error_of("epoch,loss\n1,2\n").find("runs/x.csv:1: expected the header") == 0);
  CHECK(csv_error_of(header + "1,0.7,0.5,0.7,0.5,0.1,1\n2,0.7,0.5\n") ==
        "runs/x.csv:3: expected 7 comma-separated fields, got 3");
  CHECK(csv_error_of(header + "1,0.7,0.5,0.7,0.5,0.1,1,9\n") ==
        "runs/x.csv:2: more than 7 comma-separated fields");
  CHECK(csv_error_of(header + "1,0.7,abc,0.7,0.5,0.1,1\n") ==
        "runs/x.csv:2: field 3 (train_acc) is not a number: 'abc'");
  CHECK(csv_error_of(header + "1,0.7,0.5,0.7,0.5,,1\n") ==
        "runs/x.csv:2: field 6 (lr) is not a number: ''");
  CHECK(csv_error_of(header + "1.5,0.7,0.5,0.7,0.5,0.1,1\n") ==
        "runs/x.csv:2: epoch must be an integer >= 1");
  CHECK(csv_error_of(header + "2,0.7,0.5,0.7,0.5,0.1,1\n2,0.7,0.5,0.7,0.5,0.1,1\n") ==
        "runs/x.csv:3: epoch 2 does not follow epoch 2");
  CHECK(csv_error_of(header) == "runs/x.csv:1: no data rows after the header");
  try {
    read_run_csv("/nonexistent/semfocus_run.csv");
    FAIL("no error");
  } catch (const csv_error& e) {
    CHECK(e.line() == 0);
    CHECK(e.file() == "/nonexistent/semfocus_run.csv");
    CHECK(std::string(e.what()) == "/nonexistent/semfocus_run.csv:0: cannot open the file");
  }
}

TEST_CASE("runner: run file names follow train's") {
  CHECK(run_file_name("parity", "topk:5", 3) == "parity_topk_5_seed3.csv");
  CHECK(run_file_name("listops", "banded:5+g1", 10) == "listops_banded_5_g1_seed10.csv");
  CHECK(band_file_name("block:9+g3") == "band_block_9_g3.csv");
  CHECK(shell_quote("--policies=full,topk:5") == "--policies=full,topk:5");
  CHECK(shell_quote("a b") == "'a b'");
  CHECK(shell_quote("it's") == "'it'\\''s'");
  CHECK(shell_quote("") == "''");
  CHECK(last_lines("/nonexistent/semfocus_log", 3).empty());
}

TEST_CASE("runner: curves of runs of unequal length aggregate the runs that have each epoch") {
  const std::vector<run_data> runs = {make_run({0.2, 0.4, 0.6}, {0.1, 0.2, 0.3}),
                                      make_run({0.4, 0.8}, {0.3, 0.4}),
                                      make_run({0.6, 1.0}, {0.5, 0.6})};
  const policy_curves c = aggregate_curves("topk:5", runs);
  CHECK(c.policy == "topk:5");
  CHECK(c.runs == 3);
  CHECK(c.shortest == 2);
  CHECK(c.longest == 3);
  CHECK(c.unequal_lengths());
  REQUIRE(c.epochs.size() == 3);
  const epoch_band& e1 = c.epochs[0];
  CHECK(e1.epoch == 1);
  CHECK(e1.runs == 3);
  const quartiles acc1 = e1.values[std::size_t(metric::train_acc)];
  CHECK(acc1.median == doctest::Approx(0.4));
  CHECK(acc1.q25 == doctest::Approx(0.3));
  CHECK(acc1.q75 == doctest::Approx(0.5));
  CHECK(e1.values[std::size_t(metric::train_loss)].median == doctest::Approx(0.6));
  CHECK(c.epochs[1].runs == 3);
  CHECK(c.epochs[1].values[std::size_t(metric::test_acc)].median == doctest::Approx(0.4));
  CHECK(c.epochs[2].epoch == 3);
  CHECK(c.epochs[2].runs == 1);  // only the longest run reaches epoch 3
  CHECK(c.epochs[2].values[std::size_t(metric::test_acc)].median == doctest::Approx(0.3));
  CHECK_FALSE(aggregate_curves("full", std::vector<run_data>{runs[1], runs[2]}).unequal_lengths());
  CHECK_THROWS_AS(aggregate_curves("full", std::vector<run_data>{}), std::invalid_argument);
}

TEST_CASE("runner: the summary counts never-converged runs as +inf") {
  const std::vector<run_data> runs = {
      make_run({0.5, 0.96, 0.97, 0.99}, {0.6, 0.9, 0.8, 0.85}),          // converges at 2
      make_run({0.5, 0.6, 0.7, 0.95}, {0.5, 0.6, 0.7, 0.75}),            // converges at 4
      make_run({0.5, 0.5, 0.5, 0.5, 0.5}, {0.5, 0.5, 0.5, 0.5, 0.55})};  // never, 5 epochs
  const policy_summary s = summarize("topk:5", runs);
  CHECK(s.runs == 3);
  CHECK(s.converged == 2);
  CHECK(s.convergence.q25 == 3);
  CHECK(s.convergence.median == 4);
  CHECK(s.convergence.q75 == inf);
  CHECK(s.not_reached_within == 5);
  CHECK(s.best_test_acc == doctest::Approx(0.75));     // medians of 0.9, 0.75, 0.55
  CHECK(s.last_test_acc == doctest::Approx(0.75));     // of 0.85, 0.75, 0.55
  CHECK(s.final_train_loss == doctest::Approx(0.05));  // of 0.01, 0.05, 0.5
  CHECK(s.seconds == 4);                               // of 4, 4, 5
  CHECK(s.shortest == 4);
  CHECK(s.longest == 5);
  // Two of four converged: the median's upper middle value is +inf.
  const policy_summary half =
      summarize("full", std::vector<run_data>{runs[0], runs[1], runs[2], runs[2]});
  CHECK(half.convergence.median == inf);
  CHECK(half.convergence.q25 == doctest::Approx(3.5));
}

TEST_CASE("runner: the Markdown table on a hand example") {
  policy_summary a;
  a.policy = "full";
  a.runs = 4;
  a.converged = 1;
  a.convergence = {12, inf, inf};
  a.not_reached_within = 30;
  a.best_test_acc = 0.61234;
  a.last_test_acc = 0.6;
  a.final_train_loss = 0.693147;
  a.seconds = 12.34;
  policy_summary b = a;
  b.policy = "topk:5";
  b.converged = 4;
  b.convergence = {7, 8.5, 10};
  b.not_reached_within = 0;
  b.best_test_acc = 0.9995;
  b.final_train_loss = 0.01;
  const std::vector<policy_summary> rows = {a, b};
  CHECK(markdown_table(rows) ==
        "| policy | converged | convergence epoch (median) | 25-75% | best held-out acc | "
        "last held-out acc | final train loss | seconds/run |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|\n"
        "| full | 1/4 | not reached | 12 - >30 | 0.612 | 0.600 | 0.6931 | 12.3 |\n"
        "| topk:5 | 4/4 | 8.5 | 7 - 10 | 1.000 | 0.600 | 0.0100 | 12.3 |\n");
  const std::string notes = markdown_notes(rows);
  CHECK(notes.find("counts as +inf") != std::string::npos);
  CHECK(notes.find("unequal") == std::string::npos);
  b.shortest = 3;
  b.longest = 5;
  CHECK(markdown_notes(std::vector<policy_summary>{a, b})
            .find("Runs of unequal length for topk:5: 3 to 5 epochs") != std::string::npos);
}

TEST_CASE("runner: band CSV and gnuplot script") {
  const std::vector<run_data> runs = {make_run({0.5, 1.0}, {0.25, 0.5}),
                                      make_run({0.5, 0.5}, {0.75, 0.5})};
  const policy_curves c = aggregate_curves("topk:5", runs);
  CHECK(band_csv_text(c) ==
        "epoch,runs,train_loss_median,train_loss_q25,train_loss_q75,train_acc_median,"
        "train_acc_q25,train_acc_q75,test_loss_median,test_loss_q25,test_loss_q75,"
        "test_acc_median,test_acc_q25,test_acc_q75\n"
        "1,2,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.375,0.625,0.5,0.375,0.625\n"
        "2,2,0.25,0.125,0.375,0.75,0.625,0.875,0.5,0.5,0.5,0.5,0.5,0.5\n");
  const std::vector<plot_series> series = {{"full", "band_full.csv"},
                                           {"topk:5", "band_topk_5.csv"}};
  const std::string cairo = gnuplot_script("it's parity", series, "pngcairo");
  CHECK(cairo.find("set terminal pngcairo") != std::string::npos);
  CHECK(cairo.find("set output 'train_loss.png'") != std::string::npos);
  CHECK(cairo.find("set output 'test_acc.png'") != std::string::npos);
  CHECK(cairo.find("'it''s parity: training loss") != std::string::npos);
  CHECK(cairo.find("'band_topk_5.csv' skip 1 using 1:4:5 with filledcurves lc rgb '#d62728'") !=
        std::string::npos);
  CHECK(cairo.find("'band_full.csv' skip 1 using 1:12 with lines lw 2 lc rgb '#1f77b4' title "
                   "'full'") != std::string::npos);
  CHECK(gnuplot_script("t", series, "png").find("set terminal png truecolor") != std::string::npos);
}

TEST_CASE("runner: policy specs parse to kind, k, globals and tau, and malformed specs do not") {
  const auto full = parse_policy_spec("full");
  REQUIRE(full);
  CHECK(full->kind == "full");
  CHECK(parse_policy_spec("dense")->kind == "full");
  const auto topk = parse_policy_spec("topk:5");
  REQUIRE(topk);
  CHECK((topk->kind == "topk" && topk->k == 5 && topk->globals == 0));
  const auto bg = parse_policy_spec("banded:9+g3");
  REQUIRE(bg);
  CHECK((bg->kind == "banded" && bg->k == 9 && bg->globals == 3));
  const auto blk = parse_policy_spec("block:4+g1");
  REQUIRE(blk);
  CHECK((blk->kind == "block" && blk->k == 4 && blk->globals == 1));
  const auto th = parse_policy_spec("threshold:2.5");
  REQUIRE(th);
  CHECK((th->kind == "threshold" && th->tau == 2.5));
  CHECK(parse_policy_spec("threshold:0")->tau == 0);
  for (const char* bad : {"", "topk", "topk:", "topk:0", "topk:-1", "topk:5+g1", "topk:2.5",
                          "banded:5+g0", "banded:5+g", "block:x", "threshold:-1", "threshold:inf",
                          "threshold:nan", "sparse:3", "full:1", "topk:5 "})
    CHECK_MESSAGE(!parse_policy_spec(bad), bad);
  CHECK(parse_integer("18", 1) == 18);
  CHECK(!parse_integer("0", 1));
  CHECK(!parse_integer("1e3", 0));
  CHECK(!parse_integer("1234567890123456789", 0));  // more than 18 digits
  CHECK(parse_number("0.5", 0, true) == 0.5);
  CHECK(!parse_number("0", 0, true));
  CHECK(parse_number("0", 0, false) == 0.0);
  CHECK(!parse_number("1x", 0));
}

TEST_CASE("runner: the landscape figure's gnuplot script") {
  const std::string s = landscape_script("pngcairo", {"full", "landscape_full.csv"},
                                         {"top-k(5)", "landscape_topk.csv"}, 0.25, 3.5);
  CHECK(contains(s, "set terminal pngcairo"));
  CHECK(contains(s, "set output 'landscape.png'"));
  CHECK(contains(s, "set multiplot layout 1,2"));
  CHECK(contains(s, "set cbrange [0.25:3.5]"));
  const std::size_t left = s.find(
      "set title 'full'\nplot 'landscape_full.csv' skip 1 using "
      "1:2:3 with image notitle");
  const std::size_t right = s.find(
      "set title 'top-k(5)'\nplot 'landscape_topk.csv' skip 1 "
      "using 1:2:3 with image notitle");
  CHECK(left != std::string::npos);
  CHECK(right != std::string::npos);
  CHECK(left < right);
  CHECK(contains(s, "unset multiplot"));
  CHECK(contains(landscape_script("png", {"a", "b.csv"}, {"c", "d.csv"}, 0, 1),
                 "set terminal png noenhanced"));
}

TEST_CASE("runner: the pipeline through train when SEMFOCUS_TRAIN_BINARY is set") {
  const char* train = std::getenv("SEMFOCUS_TRAIN_BINARY");
  if (train == nullptr || access(train, X_OK) != 0) {
    MESSAGE("SEMFOCUS_TRAIN_BINARY is not set to an executable: pipeline smoke test skipped");
    return;
  }
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("semfocus_runner_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::vector<policy_curves> curves;
  for (const std::string policy : {"full", "topk:3"}) {
    const std::vector<std::string> args = {
        train, "--task",  "parity", "--policy", policy,  "--blocks",  "1",  "--d",
        "8",   "--d-mlp", "8",      "--epochs", "2",     "--train",   "50", "--test",
        "20",  "--seeds", "1,2",    "--quiet",  "--out", dir.string()};
    REQUIRE(wait_process(spawn_process(args, (dir / "train.log").string())) == "");
    std::vector<run_data> runs;
    for (const std::uint64_t seed : {1u, 2u})
      runs.push_back(read_run_csv((dir / run_file_name("parity", policy, seed)).string()));
    CHECK(runs[0].size() == 2);
    const policy_summary s = summarize(policy, runs);
    CHECK(s.runs == 2);
    CHECK(s.best_test_acc >= s.last_test_acc);
    curves.push_back(aggregate_curves(policy, runs));
  }
  const figures_result f = write_figures(dir.string(), "parity", curves);
  CHECK(std::filesystem::exists(dir / "band_topk_3.csv"));
  if (f.drawn) CHECK(std::filesystem::exists(dir / "test_acc.png"));
  MESSAGE(f.message);
  std::filesystem::remove_all(dir);
}

TEST_CASE("runner: the authors' padding to a multiple of the mask size") {
  namespace tasks = semfocus::tasks;
  const tasks::dataset data = tasks::make_task("parity", {5, 3, 1, 40});
  const std::vector<semfocus::index_t> all = {0, 1, 2};

  // Off (0) and a multiple that divides 40: no padding, no new token; globals follow the bits.
  for (const semfocus::index_t m : {0, 1, 5}) {
    const auto l = semfocus::runner::make_layout(data, 2, m);
    CHECK(l.vocab == 4);
    const auto b = semfocus::runner::make_batch(data.train, all, l);
    CHECK(b.n == 42);
    CHECK(b.tokens[40] == 2);
    CHECK(b.tokens[41] == 3);
  }

  // 40 -> 45 for K = 9: five PAD tokens (a new id 2, as the task has none), then the globals.
  const auto l = semfocus::runner::make_layout(data, 2, 9);
  CHECK(l.length == 45);
  CHECK(l.pad == 2);
  CHECK(l.first_global == 3);
  CHECK(l.vocab == 5);
  const auto b = semfocus::runner::make_batch(data.train, all, l);
  REQUIRE(b.n == 47);
  CHECK(b.labels ==
        std::vector<int>{data.train[0].label, data.train[1].label, data.train[2].label});
  for (semfocus::index_t s = 0; s < 3; ++s) {
    const int* row = b.tokens.data() + s * 47;
    CHECK(std::equal(row, row + 40, data.train[std::size_t(s)].tokens.begin()));
    for (int i = 40; i < 45; ++i) CHECK(row[i] == 2);
    CHECK(row[45] == 3);
    CHECK(row[46] == 4);
  }
}

TEST_CASE(
    "runner: evaluation in forward passes of any size gives the whole split's loss and "
    "accuracy") {
  namespace nn = semfocus::nn;
  namespace tasks = semfocus::tasks;
  const tasks::dataset data = tasks::make_task("parity", {3, 60, 1, 12});
  const auto layout = semfocus::runner::make_layout(data, 0, 0);
  // d = 16: the backend's GEMM kernel (a multiple of the vector width); d = 12: Eigen's fallback.
  for (const semfocus::index_t d : {16, 12}) {
    CAPTURE(d);
    nn::model_config c;
    c.vocab = layout.vocab;
    c.classes = data.num_classes;
    c.blocks = 2;
    c.d = d;
    c.heads = 2;
    c.d_mlp = d;
    c.seed = 7;
#if defined(SEMFOCUS_HAS_XSIMD)
    const auto exec = semfocus::exec::simd;
#else
    const auto exec = semfocus::exec::reference;
#endif
    nn::encoder_classifier<semfocus::dense, std::remove_cvref_t<decltype(exec)>, float> model(
        c, semfocus::dense{}, exec);
    using semfocus::runner::evaluate;
    const auto all = evaluate(model, data.train, {}, layout, 250, 1000);  // the whole split
    const auto again = evaluate(model, data.train, {}, layout, 250, 1000);
    CHECK(again.first == all.first);  // the same bits for the same sizes
    CHECK(again.second == all.second);
#if defined(SEMFOCUS_HAS_XSIMD)
    // On one-thread replicas in parallel (parameters copied in): the same bits. The replicas
    // start from another seed, so a missed copy would show.
    {
      nn::model_config rc = c;
      rc.seed = 99;
      std::vector<decltype(model)> replicas;
      for (int r = 0; r < 3; ++r)
        replicas.emplace_back(rc, semfocus::dense{}, exec.with_threads(1));
      const auto parallel =
          evaluate(model, data.train, {}, layout, 250, 1000, std::span<decltype(model)>(replicas));
      CHECK(parallel.first == all.first);
      CHECK(parallel.second == all.second);
      CHECK_FALSE(replicas[0].training());
    }
#endif
    // A sequence a pass, and 3 a pass in groups of 7: the same up to float rounding (a product's
    // kernel, and so its summation order, may depend on its row count).
    for (const auto& sizes : {std::pair{250, 1}, std::pair{7, 3 * 12}}) {
      CAPTURE(sizes.first);
      CAPTURE(sizes.second);
      const auto other = evaluate(model, data.train, {}, layout, sizes.first, sizes.second);
      CHECK(other.first == doctest::Approx(all.first).epsilon(1e-6));
      CHECK(other.second == all.second);
    }
    CHECK(model.training());  // the mode is restored

    // Against the model's own float cross-entropy and argmax over the whole split at once.
    model.set_training(false);
    std::vector<semfocus::index_t> every(data.train.size());
    std::iota(every.begin(), every.end(), semfocus::index_t(0));
    const auto b = semfocus::runner::make_batch(data.train, every, layout);
    const auto z = model.forward(b.tokens, b.batch, b.n);
    CHECK(all.first ==
          doctest::Approx(double(nn::cross_entropy<float>(z, b.labels).loss)).epsilon(1e-5));
    semfocus::index_t correct = 0;
    for (semfocus::index_t r = 0; r < b.batch; ++r) {
      semfocus::index_t arg = 0;
      z.row(r).maxCoeff(&arg);
      correct += arg == b.labels[std::size_t(r)];
    }
    CHECK(all.second == double(correct) / double(b.batch));
  }
}

#if defined(SEMFOCUS_HAS_XSIMD)
TEST_CASE(
    "runner: grouped steps give the whole batch's activations, its gradient up to rounding, "
    "and the same bits on every thread count") {
  namespace nn = semfocus::nn;
  const semfocus::tasks::dataset data = semfocus::tasks::make_task("parity", {5, 40, 1, 10});
  const auto layout = make_layout(data, 0, 0);
  nn::model_config c;
  c.vocab = layout.vocab;
  c.classes = data.num_classes;
  c.blocks = 2;
  c.d = 16;
  c.heads = 2;
  c.d_mlp = 32;
  c.dropout = 0.2;
  c.seed = 3;
  using model_t = nn::encoder_classifier<semfocus::dense, semfocus::exec::simd_t, float>;
  const auto one = semfocus::exec::simd.with_threads(1);
  for (const semfocus::index_t batch : {7, 2}) {
    CAPTURE(batch);
    std::vector<semfocus::index_t> idx(static_cast<std::size_t>(batch));
    std::iota(idx.begin(), idx.end(), semfocus::index_t(0));
    const batch_data b = make_batch(data.train, idx, layout);

    // The whole batch on one model: logits, loss, gradients, the generator after.
    model_t whole(c, semfocus::dense{}, one);
    const std::string gen0 = whole.dropout_generator().state();
    const auto z = whole.forward(b.tokens, b.batch, b.n);
    whole.dropout_generator().set_state(gen0);
    const double loss = whole.loss_and_backward(b.tokens, b.batch, b.n, b.labels);
    const std::string gen1 = whole.dropout_generator().state();

    // A group's logits (masks offset to its first sequence) are the whole batch's rows, up to
    // the rounding of the classifier's Eigen product (2 classes: its kernel depends on the rows).
    if (b.batch > 3) {
      model_t part(c, semfocus::dense{}, one);
      part.set_mask_offset(3);
      const auto zp = part.forward(std::span<const int>(b.tokens).subspan(std::size_t(3 * b.n)),
                                   b.batch - 3, b.n);
      CHECK(double((zp - z.bottomRows(b.batch - 3)).cwiseAbs().maxCoeff()) < 1e-6);
      part.set_mask_offset(0);  // the same generator state without the offset: other masks
      part.dropout_generator().set_state(gen0);
      const auto zq = part.forward(std::span<const int>(b.tokens).subspan(std::size_t(3 * b.n)),
                                   b.batch - 3, b.n);
      CHECK(double((zq - z.bottomRows(b.batch - 3)).cwiseAbs().maxCoeff()) > 1e-4);
    }

    // 3 groups (one empty when batch = 2) on 1 and on 2 threads.
    std::vector<float> first_bits;
    for (const int threads : {1, 2}) {
      CAPTURE(threads);
      model_t model(c, semfocus::dense{}, one);
      c.seed = 77;  // the replicas start elsewhere: their parameters must be copied in
      std::vector<model_t> groups;
      for (int g = 0; g < 3; ++g) groups.emplace_back(c, semfocus::dense{}, one);
      c.seed = 3;
      const double grouped =
          grouped_loss_and_backward(model, std::span<model_t>(groups), b, threads);
      CHECK(grouped == doctest::Approx(loss).epsilon(1e-6));
      CHECK(model.dropout_generator().state() == gen1);
      const auto want = whole.parameters(), got = model.parameters();
      std::vector<float> bits;
      for (std::size_t i = 0; i < want.size(); ++i) {
        CAPTURE(want[i]->name);
        const double scale = std::max(1e-3, double(want[i]->grad.cwiseAbs().maxCoeff()));
        CHECK(double((got[i]->grad - want[i]->grad).cwiseAbs().maxCoeff()) <= 1e-5 * scale);
        bits.insert(bits.end(), got[i]->grad.data(), got[i]->grad.data() + got[i]->grad.size());
      }
      if (threads == 1)
        first_bits = bits;
      else
        CHECK(bits == first_bits);
    }
  }
}
#endif
