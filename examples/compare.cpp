// SPDX-License-Identifier: MIT
// Runs the paper's comparison of attention policies: every (policy, seed) as its own `train`
// process (at most --jobs at once), then the per-policy statistics over seeds (runner/stats.hpp:
// convergence epoch, best and last held-out accuracy, final training loss; medians and 25-75%
// ranges), a Markdown summary and the two figures (runner/plot.hpp: training loss and held-out
// accuracy against epoch, median with a 25-75% band). `compare --help` explains every option.
#include <semfocus/tasks/tasks.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "runner/plot.hpp"
#include "runner/policy_spec.hpp"
#include "runner/stats.hpp"

namespace {

namespace runner = semfocus::runner;

constexpr const char* usage = R"(usage: compare [options]

Trains every attention policy of --policies for every seed of --seeds with the `train` example,
each (policy, seed) as its own process, at most --jobs at once; then summarises each policy over
its seeds and draws the paper's two figures.

  --task NAME          task, as train's --task (default parity)
  --policies LIST      comma-separated train policy specs (default full,topk:5,banded:5,block:5);
                       full, topk:K, banded:K, block:K, threshold:TAU, banded:K+gG, block:K+gG
  --seeds S            a count N (seeds 1..N), a range A-B, or a comma-separated list
                       (default 10, the paper's count)
  --jobs N             train processes at once (default: hardware threads, here {hw})
  --threads N          threads of each train process, as train's --threads (default 1)
  --out DIR            output directory (default compare_out)
  --train-binary PATH  the trainer (default: `train` next to this executable)
  --reuse              keep every run whose CSV in DIR/runs already has --epochs rows (train's
                       default 100 if not given), or that converged and then ran --stop-after
                       epochs, instead of training it again; runs it does train get train
                       --resume, so that one with a .state file (--checkpoint-every) continues
                       where it stopped, with the same bits. Resumes an interrupted comparison,
                       extends finished runs to more --epochs, or re-summarises finished runs
  --save               each run also saves its final parameters (train --save):
                       runs/<task>_<policy>_seed<S>.params, the input of the theory example
  --help               this text

Passed to every train process when given (train's defaults otherwise; see train --help):
  --blocks N  --d N  --heads N  --d-mlp N  --activation A  --optimizer O  --lr X  --decay X
  --clip X  --epochs N  --batch N  --train N  --test N  --length N  --dropout P  --stop-after N
  --checkpoint-every N  --pad-to-mask (no value)

Output in DIR:
  runs/<task>_<policy>_seed<S>.csv  each run's per-epoch CSV (train --seeds S --out DIR/runs)
  runs/logs/<task>_<policy>_seed<S>.log   each run's output
  summary.md                        the command line, the summary table and its notes
  band_<policy>.csv                 per epoch: runs, then median, q25, q75 of train_loss,
                                    train_acc, test_loss, test_acc over seeds
  plots.gp, train_loss.png, test_acc.png   the figures, when gnuplot is on PATH (pngcairo, or
                                    png without cairo); without gnuplot only the CSVs
The table: per policy, how many runs converge (training accuracy >= 95%), the convergence epoch's
median and 25-75% range over seeds (never converged = +inf: "not reached", ">E"), the medians of
the best and last held-out accuracy, of the final training loss and of a run's wall time.
Exit status: 0 when every run succeeds, 1 when a run or the figures fail, 2 for bad arguments.
)";

[[noreturn]] void fail(const std::string& msg) {
  std::fprintf(stderr, "compare: %s\n(run compare --help for the options)\n", msg.c_str());
  std::exit(2);
}

struct options {
  std::string task = "parity", out = "compare_out", train_binary;
  std::vector<std::string> policies{"full", "topk:5", "banded:5", "block:5"};
  std::vector<std::uint64_t> seeds;
  unsigned jobs = std::max(1u, std::thread::hardware_concurrency());
  unsigned threads = 1;
  bool save = false;   // pass --save: each run's final parameters next to its CSV
  bool reuse = false;  // keep complete run CSVs already in DIR/runs instead of training again
  std::vector<std::pair<std::string, std::string>> passed;  // train options, in given order
};

// An integer >= lo written in full (runner::parse_integer), stored in v.
bool parse_unsigned(const std::string& s, unsigned long long lo, unsigned long long& v) {
  const auto x = runner::parse_integer(s, std::int64_t(lo));
  if (x) v = static_cast<unsigned long long>(*x);
  return x.has_value();
}

bool parse_real(const std::string& s, double lo, bool open) {
  return runner::parse_number(s, lo, open).has_value();
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> parts;
  std::size_t at = 0;
  while (at <= s.size()) {
    const std::size_t comma = std::min(s.find(',', at), s.size());
    parts.push_back(s.substr(at, comma - at));
    at = comma + 1;
  }
  return parts;
}

std::vector<std::uint64_t> parse_seeds(const std::string& s) {
  const auto bad = [&] {
    fail(
        "--seeds must be a count N >= 1, a range A-B (A <= B) or a comma-separated list of "
        "distinct integers >= 0, got '" +
        s + "'");
  };
  std::vector<std::uint64_t> seeds;
  unsigned long long a = 0, b = 0;
  const std::size_t dash = s.find('-');
  if (s.find(',') == std::string::npos && dash == std::string::npos) {
    if (!parse_unsigned(s, 1, a) || a > 100000) bad();
    for (std::uint64_t i = 1; i <= a; ++i) seeds.push_back(i);
  } else if (dash != std::string::npos) {
    if (!parse_unsigned(s.substr(0, dash), 0, a) || !parse_unsigned(s.substr(dash + 1), a, b) ||
        b - a >= 100000)
      bad();
    for (std::uint64_t i = a; i <= b; ++i) seeds.push_back(i);
  } else {
    for (const std::string& p : split(s)) {
      if (!parse_unsigned(p, 0, a) || std::count(seeds.begin(), seeds.end(), a)) bad();
      seeds.push_back(a);
    }
  }
  return seeds;
}

options parse(int argc, char** argv) {
  options o;
  std::string seeds = "10";
  const std::map<std::string, std::string> kinds = {{"blocks", "int"},
                                                    {"d", "int"},
                                                    {"heads", "int"},
                                                    {"d-mlp", "int"},
                                                    {"epochs", "int"},
                                                    {"batch", "int"},
                                                    {"train", "int"},
                                                    {"test", "int"},
                                                    {"length", "int"},
                                                    {"lr", "positive"},
                                                    {"decay", "positive"},
                                                    {"clip", "nonnegative"},
                                                    {"activation", "relu,gelu,mish"},
                                                    {"optimizer", "sgd,adam"},
                                                    {"dropout", "probability"},
                                                    {"stop-after", "count"},
                                                    {"checkpoint-every", "int"}};
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    if (arg == "--help" || arg == "-h") {
      std::string text = usage;
      text.replace(text.find("{hw}"), 4, std::to_string(options{}.jobs));
      std::fputs(text.c_str(), stdout);
      std::exit(0);
    }
    if (arg == "--save" || arg == "--reuse") {
      (arg == "--save" ? o.save : o.reuse) = true;
      continue;
    }
    if (arg == "--pad-to-mask") {  // a train flag: passed without a value
      o.passed.emplace_back("pad-to-mask", "");
      continue;
    }
    if (arg.rfind("--", 0) != 0) fail("unexpected argument '" + arg + "'");
    const std::string name = arg.substr(2);
    if (a + 1 >= argc) fail(arg + " needs a value");
    const std::string value = argv[++a];
    if (value.rfind("--", 0) == 0) fail(arg + " needs a value, got the option '" + value + "'");
    unsigned long long v = 0;
    if (name == "task") {
      const auto names = semfocus::tasks::task_names();
      if (std::find(names.begin(), names.end(), value) == names.end()) {
        std::string list;
        for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
        fail("--task must be one of " + list + "; got '" + value + "'");
      }
      o.task = value;
    } else if (name == "policies") {
      o.policies = split(value);
      for (std::size_t i = 0; i < o.policies.size(); ++i) {
        if (!runner::parse_policy_spec(o.policies[i]))
          fail("--policies: '" + o.policies[i] + "' is not " + runner::policy_spec_grammar);
        if (std::count(o.policies.begin(), o.policies.begin() + std::ptrdiff_t(i), o.policies[i]))
          fail("--policies: '" + o.policies[i] + "' is given twice");
      }
    } else if (name == "seeds") {
      seeds = value;
    } else if (name == "jobs" || name == "threads") {
      if (!parse_unsigned(value, name == "jobs" ? 1 : 0, v) || v > 4096)
        fail("--" + name + " must be an integer >= " + (name == "jobs" ? "1" : "0") + ", got '" +
             value + "'");
      (name == "jobs" ? o.jobs : o.threads) = unsigned(v);
    } else if (name == "out") {
      if (value.empty()) fail("--out needs a non-empty directory");
      o.out = value;
    } else if (name == "train-binary") {
      o.train_binary = value;
    } else if (const auto k = kinds.find(name); k != kinds.end()) {
      const std::string& kind = k->second;
      const bool ok = kind == "int"           ? parse_unsigned(value, 1, v)
                      : kind == "count"       ? parse_unsigned(value, 0, v)
                      : kind == "probability" ? parse_real(value, 0, false) && std::stod(value) < 1
                      : kind == "positive"    ? parse_real(value, 0, true)
                      : kind == "nonnegative" ? parse_real(value, 0, false)
                                              : std::ranges::count(split(kind), value) > 0;
      if (!ok)
        fail("--" + name + " must be " +
             (kind == "int"           ? std::string("an integer >= 1")
              : kind == "count"       ? std::string("an integer >= 0")
              : kind == "probability" ? std::string("a number in [0, 1)")
              : kind == "positive"    ? std::string("a finite number > 0")
              : kind == "nonnegative" ? std::string("a finite number >= 0")
                                      : "one of " + kind) +
             ", got '" + value + "'");
      o.passed.emplace_back(name, value);
    } else {
      fail("unknown option " + arg);
    }
  }
  o.seeds = parse_seeds(seeds);
  if (o.train_binary.empty()) {
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (ec) fail("cannot find this executable via /proc/self/exe; give --train-binary");
    o.train_binary = (self.parent_path() / "train").string();
  }
  if (access(o.train_binary.c_str(), X_OK) != 0)
    fail("the trainer '" + o.train_binary + "' is not an executable file; give --train-binary");
  return o;
}

struct job {
  std::string policy;
  std::uint64_t seed = 0;
  std::string log, failure;  // failure: "" on success
  std::chrono::steady_clock::time_point start;
  bool reused = false;  // a complete CSV was already there (--reuse)
};

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  const std::string runs_dir = o.out + "/runs";
  try {
    std::filesystem::create_directories(runs_dir + "/logs");
  } catch (const std::exception& e) {
    fail("--out: cannot create '" + runs_dir + "/logs': " + e.what());
  }
  std::string command;
  for (int a = 0; a < argc; ++a) command += (a ? " " : "") + runner::shell_quote(argv[a]);

  // Every (policy, seed), seeds outermost so that the policies advance together.
  std::vector<job> jobs;
  for (const std::uint64_t seed : o.seeds)
    for (const std::string& p : o.policies) {
      const std::string csv = runner::run_file_name(o.task, p, seed);
      jobs.push_back(
          {p, seed, runs_dir + "/logs/" + csv.substr(0, csv.size() - 4) + ".log", "", {}, false});
    }
  std::size_t reused = 0;
  if (o.reuse) {
    std::size_t epochs = 100;  // train's default
    long stop_after = -1;      // train's default: never
    for (const auto& [name, value] : o.passed) {
      if (name == "epochs") epochs = std::stoul(value);
      if (name == "stop-after") stop_after = std::stol(value);
    }
    for (job& j : jobs) {
      const std::string csv = runs_dir + "/" + runner::run_file_name(o.task, j.policy, j.seed);
      try {
        if (std::filesystem::exists(csv)) {
          const runner::run_data r = runner::read_run_csv(csv);
          const long converged = runner::convergence_epoch(r);
          j.reused = r.size() >= epochs ||
                     (stop_after >= 0 && converged > 0 && long(r.size()) >= converged + stop_after);
        }
      } catch (const runner::csv_error&) {
        j.reused = false;  // incomplete or damaged: train again
      }
      reused += j.reused;
    }
  }
  const unsigned parallel = std::min<unsigned>(o.jobs, unsigned(jobs.size()));
  std::printf("compare: %zu runs (%zu policies x %zu seeds) of %s, %u at once, %u thread(s) each\n",
              jobs.size(), o.policies.size(), o.seeds.size(), o.task.c_str(), parallel, o.threads);
  std::fflush(stdout);

  const auto start = std::chrono::steady_clock::now();
  std::map<pid_t, std::size_t> running;
  std::size_t next = 0, finished = 0, failed = 0;
  const auto seconds_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  while (next < jobs.size() || !running.empty()) {
    while (next < jobs.size() && running.size() < parallel) {
      job& j = jobs[next];
      if (j.reused) {
        ++next;
        ++finished;
        std::printf("[%zu/%zu] %s seed %llu: reused the complete CSV\n", finished, jobs.size(),
                    j.policy.c_str(), static_cast<unsigned long long>(j.seed));
        continue;
      }
      std::vector<std::string> args = {o.train_binary, "--task", o.task, "--policy", j.policy};
      args.insert(args.end(), {"--seeds", std::to_string(j.seed), "--out", runs_dir});
      args.insert(args.end(), {"--threads", std::to_string(o.threads), "--quiet"});
      if (o.save) args.push_back("--save");
      if (o.reuse) args.push_back("--resume");
      for (const auto& [name, value] : o.passed) {
        args.push_back("--" + name);
        if (!value.empty()) args.push_back(value);
      }
      j.start = std::chrono::steady_clock::now();
      try {
        running[runner::spawn_process(args, j.log)] = next;
      } catch (const std::runtime_error& e) {
        j.failure = e.what();
        ++finished;
        ++failed;
        std::printf("[%zu/%zu] %s seed %llu: FAILED: %s\n", finished, jobs.size(), j.policy.c_str(),
                    static_cast<unsigned long long>(j.seed), e.what());
      }
      ++next;
    }
    if (running.empty()) continue;
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "compare: waitpid: %s\n", std::strerror(errno));
      return 1;
    }
    const auto it = running.find(pid);
    if (it == running.end()) continue;
    job& j = jobs[it->second];
    running.erase(it);
    ++finished;
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
      j.failure = "exit status " + std::to_string(WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
      j.failure = "killed by signal " + std::to_string(WTERMSIG(status));
    if (j.failure.empty()) {
      std::printf("[%zu/%zu] %s seed %llu: done in %.1f s\n", finished, jobs.size(),
                  j.policy.c_str(), static_cast<unsigned long long>(j.seed),
                  seconds_since(j.start));
    } else {
      ++failed;
      std::printf("[%zu/%zu] %s seed %llu: FAILED (%s), log %s:\n%s", finished, jobs.size(),
                  j.policy.c_str(), static_cast<unsigned long long>(j.seed), j.failure.c_str(),
                  j.log.c_str(), runner::last_lines(j.log, 5).c_str());
    }
    std::fflush(stdout);
  }
  const double total = seconds_since(start);

  // The statistics of the runs that succeeded; an unreadable CSV counts as a failed run.
  std::vector<runner::policy_summary> summaries;
  std::vector<runner::policy_curves> curves;
  for (const std::string& p : o.policies) {
    std::vector<runner::run_data> runs;
    for (job& j : jobs) {
      if (j.policy != p || !j.failure.empty()) continue;
      try {
        runs.push_back(
            runner::read_run_csv(runs_dir + "/" + runner::run_file_name(o.task, p, j.seed)));
      } catch (const runner::csv_error& e) {
        j.failure = e.what();
        ++failed;
        std::printf("%s seed %llu: FAILED: %s\n", p.c_str(),
                    static_cast<unsigned long long>(j.seed), e.what());
      }
    }
    if (runs.empty()) continue;
    summaries.push_back(runner::summarize(p, runs));
    curves.push_back(runner::aggregate_curves(p, runs));
  }

  std::string seeds;
  for (const std::uint64_t s : o.seeds) seeds += (seeds.empty() ? "" : ", ") + std::to_string(s);
  std::string md =
      "# semfocus comparison: " + o.task + "\n\nProduced by\n\n    " + command + "\n\n" +
      std::to_string(jobs.size()) + " runs: " + std::to_string(o.policies.size()) +
      " policies x seeds " + seeds + ", trainer `" + o.train_binary + "`, " +
      std::to_string(parallel) + " at once, " + std::to_string(o.threads) + " thread(s) each, " +
      runner::format_number(total, 1) + " s in all" +
      (reused ? " (" + std::to_string(reused) + " runs reused from an earlier call)" : "") +
      ". Run CSVs and logs in `runs/`.\n\n";
  const std::string table = runner::markdown_table(summaries);
  md += table + "\n" + runner::markdown_notes(summaries);
  if (failed > 0) {
    md += "\nFailed runs (left out of the statistics):\n\n";
    for (const job& j : jobs)
      if (!j.failure.empty())
        md += "- " + j.policy + " seed " + std::to_string(j.seed) + ": " + j.failure + " (log `" +
              j.log + "`)\n";
  }

  bool figures_ok = true;
  if (!curves.empty()) {
    try {
      const runner::figures_result f = runner::write_figures(o.out, o.task, curves);
      figures_ok = f.drawn || f.script.empty();
      md += "\nFigures: " +
            std::string(f.drawn ? "`train_loss.png`, `test_acc.png` (median line, 25-75% band); "
                                : "none (" + f.message + "); ") +
            "per-epoch bands in `band_<policy>.csv`.\n";
      std::printf("%s\n", f.message.c_str());
    } catch (const std::runtime_error& e) {
      figures_ok = false;
      std::printf("compare: figures: %s\n", e.what());
    }
  }
  std::printf("\n%s\n", table.c_str());
  const std::string md_path = o.out + "/summary.md";
  try {
    runner::write_text_file(md_path, md);
    std::printf("wrote %s\n", md_path.c_str());
  } catch (const std::runtime_error& e) {
    std::fprintf(stderr, "compare: %s\n", e.what());
    return 1;
  }
  if (failed > 0)
    std::printf("compare: %zu of %zu runs failed (listed in %s)\n", failed, jobs.size(),
                md_path.c_str());
  return failed > 0 || !figures_ok ? 1 : 0;
}
