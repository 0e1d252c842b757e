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

#include "runner/resume.hpp"
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
  --threads N        threads of the attention backend and the layers (default 1; 0 = all
                     hardware threads); the results are the same for every N
  --groups G         data-parallel steps: each batch split into G groups of sequences, each run
                     forward and backward on its own one-thread replica of the model, the
                     gradients summed in group order (runner::grouped_loss_and_backward); G
                     groups run on min(G, --threads) threads at once, with no wait between
                     layers. Default 1 (the whole batch on one model, its layers split over the
                     threads). G fixes the bits (the gradient sums' order), --threads does not
  --dropout P        dropout probability in [0, 1) (default 0; the authors' runs use 0.01):
                     inverted dropout on the embedding and on every attention output, MLP hidden
                     layer (before the activation) and MLP output, masks drawn from the seed, off
                     at evaluation (semfocus/nn/model.hpp)
  --pad-to-mask      the authors' padding: every sequence padded to the task's maximum length
                     rounded up to a multiple of the policy's K (1 for full and threshold), e.g.
                     40 -> 45 for K = 9, with PAD tokens that attention and the mean pooling see
                     as ordinary tokens (a PAD id is added to the vocabulary when needed)
  --stop-after N     stop a run N epochs after its convergence epoch (default: never); the
                     summary's epochs column says how many epochs it ran, stopped says why
  --checkpoint-every N  write DIR/<task>_<policy>_seed<S>.state every N epochs and after the last
                     (parameters, optimiser, learning rate, dropout generator, summary so far;
                     examples/runner/resume.hpp)
  --resume           continue each run from its .state file when there is one: its options must
                     be this run's (--epochs may be larger), and so must the library's numerics
                     version and the SIMD arch this binary is built for (an AVX2 build cannot
                     resume an AVX-512 build's run); the CSV keeps the rows of the epochs done.
                     The result has the same bits as an uninterrupted run. A run without a
                     .state file starts afresh.
  --out DIR          output directory for the CSV files (default train_out)
  --save             also write each run's final parameters to DIR/<task>_<policy>_seed<S>.params
                     (semfocus/nn/checkpoint.hpp; its meta line records the task options)
  --quiet            no per-epoch lines
  --help             this text

Output: DIR/<task>_<policy>_seed<S>.csv with columns
epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds, and one row per run appended to
DIR/summary.csv (task,policy,seed,convergence_epoch,best_test_acc,last_test_acc,
final_train_loss,epochs,stopped; convergence_epoch is -1 when training accuracy never reaches
95%, epochs is the number of epochs run and stopped is 1 when --stop-after ended the run).
Same options and seed give the same numbers bit for bit, whatever --threads.
)";

struct options {
  std::string task = "parity", policy = "full", activation = "relu", optimizer = "sgd";
  std::string out = "train_out";
  index_t blocks = 5, d = 64, heads = 1, d_mlp = 64, epochs = 100, batch = 25, train = 5000,
          test = 2000, length = 0, threads = 1, stop_after = -1, checkpoint_every = 0, groups = 1;
  double lr = 0.1, decay = 0.9995, clip = 0.5, dropout = 0;
  std::vector<std::uint64_t> seeds{1};
  bool quiet = false, save = false, pad_to_mask = false, resume = false;
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
      {"blocks", {&o.blocks, 1}},         {"d", {&o.d, 1}},
      {"heads", {&o.heads, 1}},           {"d-mlp", {&o.d_mlp, 1}},
      {"epochs", {&o.epochs, 1}},         {"batch", {&o.batch, 1}},
      {"train", {&o.train, 1}},           {"test", {&o.test, 1}},
      {"length", {&o.length, 1}},         {"threads", {&o.threads, 0}},
      {"stop-after", {&o.stop_after, 0}}, {"checkpoint-every", {&o.checkpoint_every, 1}},
      {"groups", {&o.groups, 1}}};
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage, stdout);
      std::exit(0);
    }
    const std::map<std::string, bool*> flags = {{"--quiet", &o.quiet},
                                                {"--save", &o.save},
                                                {"--pad-to-mask", &o.pad_to_mask},
                                                {"--resume", &o.resume}};
    if (auto f = flags.find(arg); f != flags.end()) {
      *f->second = true;
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
    else if (name == "dropout") {
      o.dropout = parse_real(name, value, 0, false);
      if (o.dropout >= 1) fail("--dropout must be in [0, 1), got '" + value + "'");
    } else if (name == "seeds") {
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

// The policy of a --policy spec, how many global tokens it appends and its K (0 if none).
struct parsed_policy {
  runner::policy_variant policy;
  index_t globals = 0, k = 0;
};

parsed_policy parse_policy(const std::string& spec) {
  const auto parsed = runner::parse_policy_spec(spec);
  if (!parsed)
    fail(std::string("--policy must be ") + runner::policy_spec_grammar + ", got '" + spec + "'");
  try {
    return {runner::make_policy(*parsed), index_t(parsed->globals), index_t(parsed->k)};
  } catch (const semfocus::invalid_argument& e) {
    fail(std::string("--policy: ") + e.what());
  }
}

// Fisher-Yates with nn::rng draws (the same order on every standard library).
void shuffle(std::vector<index_t>& v, semfocus::nn::rng& gen) {
  for (std::size_t i = v.size(); i > 1; --i)
    std::swap(v[i - 1], v[std::size_t(gen.below(std::uint64_t(i)))]);
}

// The options that fix a run's bits (all but --epochs, --stop-after, --threads, the output and
// checkpoint options), the library's numerics version and the backend's vector arch (another
// width sums in another order): a resumed run must have the same.
std::string fingerprint(const options& o, std::uint64_t seed) {
  using semfocus::nn::detail::hex_real;
#if defined(SEMFOCUS_HAS_XSIMD)
  const std::string backend = std::string("simd:") + semfocus::simd_arch().name;
#else
  const std::string backend = "reference";
#endif
  std::ostringstream f;
  f << "task=" << o.task << " policy=" << o.policy << " seed=" << seed << " blocks=" << o.blocks
    << " d=" << o.d << " heads=" << o.heads << " d_mlp=" << o.d_mlp
    << " activation=" << o.activation << " optimizer=" << o.optimizer << " lr=" << hex_real(o.lr)
    << " decay=" << hex_real(o.decay) << " clip=" << hex_real(o.clip) << " batch=" << o.batch
    << " train=" << o.train << " test=" << o.test << " length=" << o.length
    << " numerics=" << semfocus::nn::numerics_version << " dropout=" << hex_real(o.dropout)
    << " pad_to_mask=" << o.pad_to_mask << " backend=" << backend;
  if (o.groups > 1) f << " groups=" << o.groups;  // absent for 1: older states still resume
  return f.str();
}

// Keeps the header and the rows of epochs 1..done of a run CSV (a resumed run appends to it).
void keep_csv_rows(const std::string& path, index_t done) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  if (index_t(lines.size()) < done + 1)
    throw semfocus::invalid_argument("--resume: " + path + " has " +
                                     std::to_string(lines.size() ? lines.size() - 1 : 0) +
                                     " epoch rows, the state " + std::to_string(done));
  for (index_t e = 1; e <= done; ++e)
    if (lines[std::size_t(e)].rfind(std::to_string(e) + ",", 0) != 0)
      throw semfocus::invalid_argument("--resume: row " + std::to_string(e) + " of " + path +
                                       " is not epoch " + std::to_string(e));
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    for (index_t e = 0; e <= done; ++e) out << lines[std::size_t(e)] << '\n';
  }
  std::filesystem::rename(tmp, path);
}

struct run_summary {
  runner::run_state state;       // convergence, best and last test accuracy, final train loss
  index_t epochs = 0;            // epochs run in all (also before a resume)
  bool stopped = false;          // --stop-after ended the run
  double steps_per_second = 0;   // optimisation steps (forward, backward, clip, update) per second
  double eval_per_second = 0;    // sequences evaluated (forward, loss, accuracy) per second
  double seconds_per_epoch = 0;  // wall time of an epoch: its steps and its evaluation
};

template <class Policy, class Exec>
run_summary train_one(const options& o, const Policy& policy, const parsed_policy& spec,
                      const Exec& exec, std::uint64_t seed, const std::string& path) {
  namespace nn = semfocus::nn;
  const semfocus::tasks::dataset data =
      semfocus::tasks::make_task(o.task, {seed, o.train, o.test, o.length});
  const runner::input_layout layout =
      runner::make_layout(data, spec.globals, o.pad_to_mask ? std::max<index_t>(spec.k, 1) : 0);
  nn::model_config c;
  c.vocab = layout.vocab;
  c.classes = data.num_classes;
  c.blocks = o.blocks;
  c.d = o.d;
  c.heads = o.heads;
  c.d_mlp = o.d_mlp;
  c.activation = o.activation == "gelu"   ? nn::activation::gelu
                 : o.activation == "mish" ? nn::activation::mish
                                          : nn::activation::relu;
  c.seed = seed;
  c.dropout = o.dropout;
  nn::encoder_classifier<Policy, Exec, T> model(c, policy, exec);
  const nn::parameter_list<T> params = model.parameters();
  std::variant<nn::sgd<T>, nn::adam<T>> opt = nn::sgd<T>(o.lr);
  if (o.optimizer == "adam") opt = nn::adam<T>(o.lr);
  nn::adam<T>* adam = std::get_if<nn::adam<T>>(&opt);
  const nn::lr_decay decay(o.decay);

  run_summary s;
  runner::run_state& st = s.state;
  st.fingerprint = fingerprint(o, seed);
  const std::string state_path = path + ".state", csv_path = path + ".csv";
  if (o.resume && std::filesystem::exists(state_path)) {
    st = runner::load_run_state(state_path, st.fingerprint, params, adam);
    if (st.epoch > o.epochs)
      throw semfocus::invalid_argument("--resume: " + state_path + " holds " +
                                       std::to_string(st.epoch) + " epochs, more than --epochs " +
                                       std::to_string(o.epochs));
    std::visit([&](auto& opt_) { opt_.lr = st.lr; }, opt);
    model.dropout_generator().set_state(st.dropout_rng);
    keep_csv_rows(csv_path, st.epoch);
  }
  std::ofstream csv(csv_path, st.epoch > 0 ? std::ios::app : std::ios::trunc);
  if (st.epoch == 0) csv << "epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds\n";
  std::vector<index_t> order(data.train.size());
  std::iota(order.begin(), order.end(), 0);
  nn::rng order_gen(seed ^ 0x5eedba7c4ull);  // the batch order, apart from the init stream
  for (index_t e = 1; e <= st.epoch; ++e) shuffle(order, order_gen);  // replayed on a resume

  // One-thread replicas of the model: evaluation runs its passes on `replicas` in parallel (the
  // same bits), and --groups G > 1 runs a step's groups on `groups`.
  using model_type = nn::encoder_classifier<Policy, Exec, T>;
  const int threads = nn::threads_of(exec);
  std::vector<model_type> replicas, groups;
  const auto make_replicas = [&](std::vector<model_type>& v, index_t count) {
    v.reserve(std::size_t(count));
    for (index_t r = 0; r < count; ++r) {
      if constexpr (requires { exec.with_threads(1); })
        v.emplace_back(c, policy, exec.with_threads(1));
      else
        v.emplace_back(c, policy, exec);
    }
  };
  if (threads > 1) make_replicas(replicas, threads);
  if (o.groups > 1) make_replicas(groups, o.groups);
  const auto evaluate = [&](const std::vector<semfocus::tasks::example>& split) {
    return runner::evaluate(model, split, {}, layout, 250, 1024, std::span<model_type>(replicas));
  };
  const auto stop_due = [&] {
    return o.stop_after >= 0 && st.convergence >= 0 && st.epoch >= st.convergence + o.stop_after;
  };
  const double base_seconds = st.seconds;  // wall time before a resume
  const auto start = std::chrono::steady_clock::now();
  double train_seconds = 0, eval_seconds = 0;  // for the throughput figures
  index_t steps = 0, epochs_here = 0;
  while (st.epoch < o.epochs && !(s.stopped = stop_due())) {
    const index_t epoch = ++st.epoch;
    shuffle(order, order_gen);
    const auto epoch_start = std::chrono::steady_clock::now();
    for (std::size_t first = 0; first < order.size(); first += std::size_t(o.batch)) {
      const std::size_t count = std::min(order.size() - first, std::size_t(o.batch));
      const runner::batch_data b =
          runner::make_batch(data.train, {order.data() + first, count}, layout);
      if (groups.empty())
        model.loss_and_backward(b.tokens, b.batch, b.n, b.labels);
      else
        runner::grouped_loss_and_backward(model, std::span<model_type>(groups), b, threads);
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
    ++epochs_here;
    const double secs =
        base_seconds +
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    csv << epoch << ',' << train_loss << ',' << train_acc << ',' << test_loss << ',' << test_acc
        << ',' << lr << ',' << secs << '\n'
        << std::flush;
    if (!o.quiet)
      std::printf(
          "seed %llu epoch %4td  train loss %.4f acc %.3f  test loss %.4f acc %.3f  "
          "lr %.4g  %.1fs\n",
          static_cast<unsigned long long>(seed), epoch, train_loss, train_acc, test_loss, test_acc,
          lr, secs);
    if (st.convergence < 0 && train_acc >= 0.95) st.convergence = epoch;
    st.best_test = std::max(st.best_test, test_acc);
    st.last_test = test_acc;
    st.final_train_loss = train_loss;
    if (o.checkpoint_every > 0 &&
        (epoch % o.checkpoint_every == 0 || epoch == o.epochs || stop_due())) {
      st.lr = std::visit([](const auto& opt_) { return opt_.lr; }, opt);
      st.dropout_rng = model.dropout_generator().state();
      st.seconds = secs;
      runner::save_run_state(state_path, st, c, params, adam);
    }
  }
  s.epochs = st.epoch;
  if (epochs_here > 0) {  // none when a resumed run was already complete
    s.steps_per_second = double(steps) / train_seconds;
    s.eval_per_second =
        double(epochs_here) * double(data.train.size() + data.test.size()) / eval_seconds;
    s.seconds_per_epoch = (train_seconds + eval_seconds) / double(epochs_here);
  }
  if (o.save) {
    std::ostringstream meta;
    meta << "task=" << o.task << " policy=" << o.policy << " seed=" << seed << " train=" << o.train
         << " test=" << o.test << " length=" << o.length << " epochs=" << st.epoch;
    if (o.pad_to_mask) meta << " pad_multiple=" << std::max<index_t>(spec.k, 1);
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
  const parsed_policy spec = parse_policy(o.policy);
  try {
    std::filesystem::create_directories(o.out);
  } catch (const std::exception& e) {
    fail("--out: cannot create directory '" + o.out + "': " + e.what());
  }
  const std::string summary_path = o.out + "/summary.csv";
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
          [&](const auto& p) { return train_one(o, p, spec, exec, seed, path); }, spec.policy);
      const runner::run_state& st = s.state;
      std::printf(
          "%s %s seed %llu: convergence epoch %td, best test acc %.3f, last test acc %.3f, "
          "final train loss %.4f after %td epochs%s",
          o.task.c_str(), o.policy.c_str(), static_cast<unsigned long long>(seed), st.convergence,
          st.best_test, st.last_test, st.final_train_loss, s.epochs,
          s.stopped ? " (stopped by --stop-after)" : "");
      if (s.steps_per_second > 0)
        std::printf("; %.1f steps/s, %.0f sequences/s evaluated, %.2f s/epoch", s.steps_per_second,
                    s.eval_per_second, s.seconds_per_epoch);
      std::printf(" (%s)\n", csv.c_str());
      // One append per row, the header with the first: train processes that share DIR (compare
      // runs several) then write whole rows and, unless two finish at the same instant, one
      // header.
      std::ostringstream row;
      std::error_code none;
      if (std::filesystem::file_size(summary_path, none) == 0 || none)
        row << "task,policy,seed,convergence_epoch,best_test_acc,last_test_acc,final_train_loss,"
               "epochs,stopped\n";
      row << o.task << ',' << o.policy << ',' << seed << ',' << st.convergence << ','
          << st.best_test << ',' << st.last_test << ',' << st.final_train_loss << ',' << s.epochs
          << ',' << s.stopped << '\n';
      std::ofstream(summary_path, std::ios::app) << row.str() << std::flush;
    }
  } catch (const std::exception& e) {  // invalid_argument, or a file system error
    fail(e.what());
  }
  return 0;
}
