// SPDX-License-Identifier: MIT
// Trains the paper's encoder classifier (nn/) on one of the paper's tasks (tasks/) with any
// attention policy, over one or more seeds. Each epoch: one pass of shuffled mini-batches (SGD or
// Adam, gradient clipping by global norm), then training loss and accuracy re-evaluated over the
// whole training set and held-out loss and accuracy; one progress line and one CSV row. Each run
// ends with a summary: convergence epoch (first epoch with training accuracy >= 95%), best and
// last held-out accuracy. `train --help` explains every option.
#include <semfocus/nn/nn.hpp>
#include <semfocus/semfocus.hpp>
#include <semfocus/tasks/tasks.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "runner/training.hpp"

namespace {

namespace runner = semfocus::runner;
using semfocus::index_t;
using T = float;

constexpr const char* usage = R"(usage: train [options]

Trains a pre-LayerNorm transformer encoder classifier (the paper's model) with one attention
policy on one task, for each seed, and writes one CSV per run plus a summary row per run.

  --task NAME        parity (default), even_pairs, missing_duplicates, stack_manipulation,
                     modular_arithmetic, solve_equation, cycle_navigation, listops
  --policy SPEC      attention policy: full (default), topk:K, banded:K, block:K, threshold:TAU,
                     and banded:K+gG or block:K+gG for G global tokens appended to every sequence
  --blocks N         encoder blocks (default 5)
  --d N              model width, also the width of every head (default 64)
  --heads N          attention heads (default 1)
  --d-mlp N          hidden width of the MLPs (default 64)
  --activation A     relu (default), gelu or mish
  --optimizer O      sgd (default, plain) or adam
  --lr X             learning rate (default 0.1)
  --decay X          learning-rate factor applied after every epoch (default 0.9995)
  --clip X           gradient clipping by global norm (default 0.5; 0 disables)
  --epochs N         epochs (default 100)
  --batch N          mini-batch size (default 25)
  --seeds LIST       comma-separated seeds, each a full run (default 1); the seed fixes the data,
                     the initialisation and the batch order
  --train N          training sequences (default 5000)
  --test N           held-out sequences (default 2000)
  --length N         sequence length (default: the task's, 40; ListOps 500-600)
  --threads N        threads of the SIMD backend (default 1; 0 = all hardware threads)
  --out DIR          output directory for the CSV files (default train_out)
  --save             also write each run's final parameters to DIR/<task>_<policy>_seed<S>.params
                     (semfocus/nn/checkpoint.hpp; its meta line records the task options)
  --quiet            no per-epoch lines
  --help             this text

Output: DIR/<task>_<policy>_seed<S>.csv with columns
epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds, and one row per run appended to
DIR/summary.csv (task,policy,seed,convergence_epoch,best_test_acc,last_test_acc,
final_train_loss; convergence_epoch is -1 when training accuracy never reaches 95%).
Same options, same seed and same thread count give the same numbers bit for bit.
)";

struct options {
  std::string task = "parity", policy = "full", activation = "relu", optimizer = "sgd";
  std::string out = "train_out";
  index_t blocks = 5, d = 64, heads = 1, d_mlp = 64, epochs = 100, batch = 25, train = 5000,
          test = 2000, length = 0, threads = 1;
  double lr = 0.1, decay = 0.9995, clip = 0.5;
  std::vector<std::uint64_t> seeds{1};
  bool quiet = false, save = false;
};

[[noreturn]] void fail(const std::string& msg) {
  std::fprintf(stderr, "train: %s\n(run train --help for the options)\n", msg.c_str());
  std::exit(2);
}

index_t parse_int(const std::string& name, const std::string& s, index_t lo) {
  const auto v = runner::parse_integer(s, lo);
  if (!v) fail("--" + name + " must be an integer >= " + std::to_string(lo) + ", got '" + s + "'");
  return index_t(*v);
}

double parse_real(const std::string& name, const std::string& s, double lo, bool open) {
  const auto v = runner::parse_number(s, lo, open);
  if (!v)
    fail("--" + name + " must be a finite number " + (open ? "> " : ">= ") + std::to_string(lo) +
         ", got '" + s + "'");
  return *v;
}

options parse(int argc, char** argv) {
  options o;
  const std::map<std::string, std::string*> strings = {{"task", &o.task},
                                                       {"policy", &o.policy},
                                                       {"activation", &o.activation},
                                                       {"optimizer", &o.optimizer},
                                                       {"out", &o.out}};
  const std::map<std::string, std::pair<index_t*, index_t>> ints = {
      {"blocks", {&o.blocks, 1}},  {"d", {&o.d, 1}},           {"heads", {&o.heads, 1}},
      {"d-mlp", {&o.d_mlp, 1}},    {"epochs", {&o.epochs, 1}}, {"batch", {&o.batch, 1}},
      {"train", {&o.train, 1}},    {"test", {&o.test, 1}},     {"length", {&o.length, 1}},
      {"threads", {&o.threads, 0}}};
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    }
    if (arg == "--quiet" || arg == "--save") {
      (arg == "--quiet" ? o.quiet : o.save) = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) fail("unexpected argument '" + arg + "'");
    const std::string name = arg.substr(2);
    if (a + 1 >= argc) fail("--" + name + " needs a value");
    const std::string value = argv[++a];
    if (auto s = strings.find(name); s != strings.end())
      *s->second = value;
    else if (auto i = ints.find(name); i != ints.end())
      *i->second.first = parse_int(name, value, i->second.second);
    else if (name == "lr")
      o.lr = parse_real(name, value, 0, true);
    else if (name == "decay")
      o.decay = parse_real(name, value, 0, true);
    else if (name == "clip")
      o.clip = parse_real(name, value, 0, false);
    else if (name == "seeds") {
      o.seeds.clear();
      std::size_t at = 0;
      while (at <= value.size()) {
        const std::size_t comma = std::min(value.find(',', at), value.size());
        o.seeds.push_back(std::uint64_t(parse_int("seeds", value.substr(at, comma - at), 0)));
        at = comma + 1;
      }
    } else
      fail("unknown option --" + name);
  }
  const auto names = semfocus::tasks::task_names();
  if (std::find(names.begin(), names.end(), o.task) == names.end())
    fail(
        "--task must be one of parity, even_pairs, missing_duplicates, stack_manipulation, "
        "modular_arithmetic, solve_equation, cycle_navigation, listops; got '" +
        o.task + "'");
  if (o.activation != "relu" && o.activation != "gelu" && o.activation != "mish")
    fail("--activation must be relu, gelu or mish, got '" + o.activation + "'");
  if (o.optimizer != "sgd" && o.optimizer != "adam")
    fail("--optimizer must be sgd or adam, got '" + o.optimizer + "'");
  return o;
}

// The policy of a --policy spec, and how many global tokens it appends.
std::pair<runner::policy_variant, index_t> parse_policy(const std::string& spec) {
  const auto parsed = runner::parse_policy_spec(spec);
  if (!parsed)
    fail(std::string("--policy must be ") + runner::policy_spec_grammar + ", got '" + spec + "'");
  try {
    return {runner::make_policy(*parsed), index_t(parsed->globals)};
  } catch (const semfocus::invalid_argument& e) {
    fail(std::string("--policy: ") + e.what());
  }
}

// Fisher-Yates with nn::rng draws (the same order on every standard library).
void shuffle(std::vector<index_t>& v, semfocus::nn::rng& gen) {
  for (std::size_t i = v.size(); i > 1; --i)
    std::swap(v[i - 1], v[std::size_t(gen.below(std::uint64_t(i)))]);
}

struct run_summary {
  index_t convergence = -1;
  double best_test = 0, last_test = 0, final_train_loss = 0;
  double steps_per_second = 0;   // optimisation steps (forward, backward, clip, update) per second
  double eval_per_second = 0;    // sequences evaluated (forward, loss, accuracy) per second
  double seconds_per_epoch = 0;  // wall time of an epoch: its steps and its evaluation
};

template <class Policy, class Exec>
run_summary train_one(const options& o, const Policy& policy, index_t globals, const Exec& exec,
                      std::uint64_t seed, const std::string& path) {
  namespace nn = semfocus::nn;
  const semfocus::tasks::dataset data =
      semfocus::tasks::make_task(o.task, {seed, o.train, o.test, o.length});
  nn::model_config c;
  c.vocab = data.vocab_size + globals;
  c.classes = data.num_classes;
  c.blocks = o.blocks;
  c.d = o.d;
  c.heads = o.heads;
  c.d_mlp = o.d_mlp;
  c.activation = o.activation == "gelu"   ? nn::activation::gelu
                 : o.activation == "mish" ? nn::activation::mish
                                          : nn::activation::relu;
  c.seed = seed;
  nn::encoder_classifier<Policy, Exec, T> model(c, policy, exec);
  const nn::parameter_list<T> params = model.parameters();
  std::variant<nn::sgd<T>, nn::adam<T>> opt = nn::sgd<T>(o.lr);
  if (o.optimizer == "adam") opt = nn::adam<T>(o.lr);
  const nn::lr_decay decay(o.decay);

  const auto evaluate = [&](const std::vector<semfocus::tasks::example>& split) {
    return runner::evaluate(model, data, split, {}, globals);
  };

  std::ofstream csv(path + ".csv");
  csv << "epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds\n";
  std::vector<index_t> order(data.train.size());
  std::iota(order.begin(), order.end(), 0);
  nn::rng order_gen(seed ^ 0x5eedba7c4ull);  // the batch order, apart from the init stream
  run_summary s;
  const auto start = std::chrono::steady_clock::now();
  double train_seconds = 0, eval_seconds = 0;  // for the throughput figures
  index_t steps = 0;
  for (index_t epoch = 1; epoch <= o.epochs; ++epoch) {
    shuffle(order, order_gen);
    const auto epoch_start = std::chrono::steady_clock::now();
    for (std::size_t first = 0; first < order.size(); first += std::size_t(o.batch)) {
      const std::size_t count = std::min(order.size() - first, std::size_t(o.batch));
      const runner::batch_data b =
          runner::make_batch(data, data.train, {order.data() + first, count}, globals);
      model.loss_and_backward(b.tokens, b.batch, b.n, b.labels);
      if (o.clip > 0) nn::clip_grad_norm(params, o.clip);
      std::visit([&](auto& opt_) { opt_.step(params); }, opt);
      ++steps;
    }
    train_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    const double lr = std::visit([](const auto& opt_) { return opt_.lr; }, opt);
    std::visit([&](auto& opt_) { decay.epoch_end(opt_); }, opt);
    const auto eval_start = std::chrono::steady_clock::now();
    const auto [train_loss, train_acc] = evaluate(data.train);
    const auto [test_loss, test_acc] = evaluate(data.test);
    eval_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - eval_start).count();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    csv << epoch << ',' << train_loss << ',' << train_acc << ',' << test_loss << ',' << test_acc
        << ',' << lr << ',' << secs << '\n';
    if (!o.quiet)
      std::printf(
          "seed %llu epoch %4td  train loss %.4f acc %.3f  test loss %.4f acc %.3f  "
          "lr %.4g  %.1fs\n",
          static_cast<unsigned long long>(seed), epoch, train_loss, train_acc, test_loss, test_acc,
          lr, secs);
    if (s.convergence < 0 && train_acc >= 0.95) s.convergence = epoch;
    s.best_test = std::max(s.best_test, test_acc);
    s.last_test = test_acc;
    s.final_train_loss = train_loss;
  }
  s.steps_per_second = double(steps) / train_seconds;
  s.eval_per_second =
      double(o.epochs) * double(data.train.size() + data.test.size()) / eval_seconds;
  s.seconds_per_epoch = (train_seconds + eval_seconds) / double(o.epochs);
  if (o.save) {
    std::ostringstream meta;
    meta << "task=" << o.task << " policy=" << o.policy << " seed=" << seed << " train=" << o.train
         << " test=" << o.test << " length=" << o.length << " epochs=" << o.epochs;
    nn::save_checkpoint(path + ".params", c, params, meta.str());
  }
  return s;
}

std::string file_safe(std::string s) {
  for (char& ch : s)
    if (ch == ':' || ch == '+' || ch == '/') ch = '_';
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
#if defined(__GLIBC__)
  // Every step frees and re-allocates the same activation matrices (0.25-8 MB at the paper's
  // sizes). With glibc's defaults such blocks go back to the kernel (munmap, heap trimming) and
  // the next step faults fresh zeroed pages in; keeping them in the process saves about 7% of an
  // epoch (Parity, AMD EPYC, AVX2). Only the allocator's retention changes, never a result.
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  mallopt(M_TOP_PAD, 64 << 20);
#endif
  // Named members, not a structured binding: clang 14 cannot capture bindings in a lambda.
  const auto spec = parse_policy(o.policy);
  const auto& policy = spec.first;
  const auto& globals = spec.second;
  try {
    std::filesystem::create_directories(o.out);
  } catch (const std::exception& e) {
    fail("--out: cannot create directory '" + o.out + "': " + e.what());
  }
  const std::string summary_path = o.out + "/summary.csv";
  const bool fresh = !std::filesystem::exists(summary_path);
  std::ofstream summary(summary_path, std::ios::app);
  if (fresh)
    summary << "task,policy,seed,convergence_epoch,best_test_acc,last_test_acc,final_train_loss\n";
#if defined(SEMFOCUS_HAS_XSIMD)
  const auto exec = semfocus::exec::simd.with_threads(int(o.threads));
#else
  const auto exec = semfocus::exec::reference;
#endif
  try {
    for (const std::uint64_t seed : o.seeds) {
      const std::string path =
          o.out + "/" + o.task + "_" + file_safe(o.policy) + "_seed" + std::to_string(seed);
      const std::string csv = path + ".csv";
      const run_summary s = std::visit(
          [&](const auto& p) { return train_one(o, p, globals, exec, seed, path); }, policy);
      std::printf(
          "%s %s seed %llu: convergence epoch %td, best test acc %.3f, last test acc %.3f, "
          "final train loss %.4f; %.1f steps/s, %.0f sequences/s evaluated, %.2f s/epoch (%s)\n",
          o.task.c_str(), o.policy.c_str(), static_cast<unsigned long long>(seed), s.convergence,
          s.best_test, s.last_test, s.final_train_loss, s.steps_per_second, s.eval_per_second,
          s.seconds_per_epoch, csv.c_str());
      summary << o.task << ',' << o.policy << ',' << seed << ',' << s.convergence << ','
              << s.best_test << ',' << s.last_test << ',' << s.final_train_loss << '\n';
    }
  } catch (const semfocus::invalid_argument& e) {
    fail(e.what());
  }
  return 0;
}
