// SPDX-License-Identifier: MIT
#pragma once

// Statistics of the experiment runner (examples/compare.cpp): reading the per-epoch CSV files of
// examples/train.cpp, the convergence epoch of a run, per-policy aggregation over seeds (median
// and 25%/75% quantiles per epoch, Hyndman-Fan type 7 through semfocus::bounds::quantile_sorted)
// and the per-policy summary with its Markdown table, as the paper's Experiments report them.

#include <semfocus/bounds/quantiles.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <istream>
#include <limits>
#include <map>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace semfocus::runner {

/// \brief The four per-epoch metrics that are aggregated, in the CSV's order.
enum class metric : std::size_t { train_loss = 0, train_acc = 1, test_loss = 2, test_acc = 3 };
inline constexpr std::size_t metric_count = 4;
/// \brief The CSV column name of each metric, indexed by std::size_t(metric).
inline constexpr std::array<std::string_view, metric_count> metric_names = {
    "train_loss", "train_acc", "test_loss", "test_acc"};

/// \brief The header line that examples/train.cpp writes to every run CSV.
inline constexpr std::string_view run_csv_header =
    "epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds";

/// \brief One run (one policy, one seed) as per-epoch columns; all vectors have size() rows.
struct run_data {
  std::string source;  // the file (or stream name) it was read from
  std::vector<int> epoch;
  std::vector<double> train_loss, train_acc, test_loss, test_acc, lr, seconds;

  /// \brief The number of epochs (rows). O(1).
  std::size_t size() const { return epoch.size(); }
  /// \brief The column of metric `m`. O(1).
  const std::vector<double>& column(metric m) const {
    switch (m) {
      case metric::train_loss:
        return train_loss;
      case metric::train_acc:
        return train_acc;
      case metric::test_loss:
        return test_loss;
      default:
        return test_acc;
    }
  }
};

/// \brief Malformed run CSV; what() reads "FILE:LINE: problem".
class csv_error : public std::runtime_error {
 public:
  csv_error(const std::string& file, std::size_t line, const std::string& problem)
      : std::runtime_error(file + ":" + std::to_string(line) + ": " + problem),
        file_(file),
        line_(line) {}
  /// \brief The file named in the message.
  const std::string& file() const { return file_; }
  /// \brief The 1-based line of the problem (0 when the file could not be opened).
  std::size_t line() const { return line_; }

 private:
  std::string file_;
  std::size_t line_;
};

/// \brief Parses a run CSV from `in`; `name` is used in error messages and stored as source.
/// The first line must be run_csv_header (a trailing '\r' is ignored); every later non-empty line
/// has 7 comma-separated numbers; epochs are integers >= 1, strictly increasing. Values may be
/// "nan" or "inf" (a diverged loss). O(characters).
/// \throws csv_error naming `name` and the line for a wrong header, a wrong field count, a field
/// that is not a number, a non-increasing epoch, or no data rows.
inline run_data parse_run_csv(std::istream& in, const std::string& name) {
  run_data r;
  r.source = name;
  std::string line;
  std::size_t number = 0;
  constexpr std::array<std::string_view, 7> column_names = {
      "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"};
  const auto strip = [](std::string& s) {
    if (!s.empty() && s.back() == '\r') s.pop_back();
  };
  if (!std::getline(in, line)) throw csv_error(name, 1, "empty file, expected the header line");
  ++number;
  strip(line);
  if (line != run_csv_header)
    throw csv_error(
        name, 1, "expected the header '" + std::string(run_csv_header) + "', got '" + line + "'");
  while (std::getline(in, line)) {
    ++number;
    strip(line);
    if (line.empty()) continue;
    std::array<double, 7> v{};
    std::size_t field = 0, at = 0;
    while (true) {
      const std::size_t comma = std::min(line.find(',', at), line.size());
      if (field == v.size()) throw csv_error(name, number, "more than 7 comma-separated fields");
      const char* first = line.data() + at;
      const char* last = line.data() + comma;
      const auto [end, ec] = std::from_chars(first, last, v[field]);
      if (ec != std::errc() || end != last || first == last)
        throw csv_error(name, number,
                        "field " + std::to_string(field + 1) + " (" +
                            std::string(column_names[field]) + ") is not a number: '" +
                            std::string(first, last) + "'");
      ++field;
      if (comma == line.size()) break;
      at = comma + 1;
    }
    if (field != v.size())
      throw csv_error(name, number,
                      "expected 7 comma-separated fields, got " + std::to_string(field));
    if (!(v[0] >= 1 && v[0] <= 1e9 && v[0] == std::floor(v[0])))
      throw csv_error(name, number, "epoch must be an integer >= 1");
    const int epoch = int(v[0]);
    if (!r.epoch.empty() && epoch <= r.epoch.back())
      throw csv_error(name, number,
                      "epoch " + std::to_string(epoch) + " does not follow epoch " +
                          std::to_string(r.epoch.back()));
    r.epoch.push_back(epoch);
    r.train_loss.push_back(v[1]);
    r.train_acc.push_back(v[2]);
    r.test_loss.push_back(v[3]);
    r.test_acc.push_back(v[4]);
    r.lr.push_back(v[5]);
    r.seconds.push_back(v[6]);
  }
  if (r.epoch.empty()) throw csv_error(name, number, "no data rows after the header");
  return r;
}

/// \brief Reads the run CSV at `path` (see parse_run_csv). O(file size).
/// \throws csv_error with line 0 if the file cannot be opened, or as parse_run_csv.
inline run_data read_run_csv(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw csv_error(path, 0, "cannot open the file");
  return parse_run_csv(in, path);
}

/// \brief The run CSV name that examples/train.cpp writes for (task, policy spec, seed):
/// "<task>_<policy>_seed<S>.csv" with ':', '+' and '/' in the policy replaced by '_'. O(length).
inline std::string run_file_name(const std::string& task, std::string policy, std::uint64_t seed) {
  for (char& ch : policy)
    if (ch == ':' || ch == '+' || ch == '/') ch = '_';
  return task + "_" + policy + "_seed" + std::to_string(seed) + ".csv";
}

/// \brief The training accuracy that counts as converged (the paper's 95%).
inline constexpr double convergence_accuracy = 0.95;

/// \brief The convergence epoch of `r`: the epoch of the first row with train_acc >= threshold,
/// or -1 if there is none. O(epochs). No errors.
inline int convergence_epoch(const run_data& r, double threshold = convergence_accuracy) {
  for (std::size_t i = 0; i < r.size(); ++i)
    if (r.train_acc[i] >= threshold) return r.epoch[i];
  return -1;
}

/// \brief The 25% quantile, median and 75% quantile of a sample.
struct quartiles {
  double q25 = 0, median = 0, q75 = 0;
};

/// \brief Type-7 quartiles of `values` (NaN is not allowed; +inf is, see quantile_sorted): sorts
/// a copy and calls semfocus::bounds::quantile_sorted at 0.25, 0.5 and 0.75. For an odd count
/// the median is the middle value, for an even count the mean of the two middle values (or +inf
/// if the upper one is +inf). O(n log n).
/// \throws std::invalid_argument if `values` is empty or holds a NaN.
inline quartiles quartiles_of(std::vector<double> values) {
  if (values.empty()) throw std::invalid_argument("semfocus::runner::quartiles_of: no values");
  if (std::any_of(values.begin(), values.end(), [](double x) { return std::isnan(x); }))
    throw std::invalid_argument("semfocus::runner::quartiles_of: NaN value");
  std::sort(values.begin(), values.end());
  return {bounds::quantile_sorted(values, 0.25), bounds::quantile_sorted(values, 0.5),
          bounds::quantile_sorted(values, 0.75)};
}

/// \brief The type-7 median of `values` (see quartiles_of). O(n log n).
/// \throws std::invalid_argument as quartiles_of.
inline double median_of(std::vector<double> values) {
  return quartiles_of(std::move(values)).median;
}

/// \brief The value a metric contributes to the statistics: a NaN (a diverged loss) counts as
/// +inf, the worst loss; every other value is itself. O(1).
inline double stat_value(double x) {
  return std::isnan(x) ? std::numeric_limits<double>::infinity() : x;
}

/// \brief The statistics of one epoch over the runs that have that epoch.
struct epoch_band {
  int epoch = 0;
  std::size_t runs = 0;                          // how many runs have this epoch
  std::array<quartiles, metric_count> values{};  // indexed by std::size_t(metric)
};

/// \brief The per-epoch curves of one policy over its seeds.
struct policy_curves {
  std::string policy;
  std::size_t runs = 0;                   // runs aggregated
  std::size_t shortest = 0, longest = 0;  // fewest and most epochs (rows) of a run
  std::vector<epoch_band> epochs;         // ascending epoch
  /// \brief Whether the runs have unequal lengths, so that some epochs aggregate fewer runs.
  bool unequal_lengths() const { return shortest != longest; }
};

/// \brief Per-epoch median and 25%/75% quantiles of train_loss, train_acc, test_loss and test_acc
/// over `runs`. Epochs are matched by their epoch number; an epoch that only some runs reach is
/// aggregated over those runs (epoch_band::runs says how many; policy_curves::unequal_lengths()
/// flags it). NaN values count as +inf (stat_value). O(R E log R) for R runs of E epochs.
/// \throws std::invalid_argument if `runs` is empty.
inline policy_curves aggregate_curves(const std::string& policy, std::span<const run_data> runs) {
  if (runs.empty())
    throw std::invalid_argument("semfocus::runner::aggregate_curves: no runs for policy '" +
                                policy + "'");
  policy_curves c;
  c.policy = policy;
  c.runs = runs.size();
  c.shortest = runs[0].size();
  std::map<int, std::array<std::vector<double>, metric_count>> by_epoch;
  for (const run_data& r : runs) {
    c.shortest = std::min(c.shortest, r.size());
    c.longest = std::max(c.longest, r.size());
    for (std::size_t i = 0; i < r.size(); ++i)
      for (std::size_t m = 0; m < metric_count; ++m)
        by_epoch[r.epoch[i]][m].push_back(stat_value(r.column(metric(m))[i]));
  }
  for (auto& [epoch, values] : by_epoch) {
    epoch_band b;
    b.epoch = epoch;
    b.runs = values[0].size();
    for (std::size_t m = 0; m < metric_count; ++m) b.values[m] = quartiles_of(std::move(values[m]));
    c.epochs.push_back(b);
  }
  return c;
}

/// \brief The summary of one policy over its seeds (the table of the comparison).
struct policy_summary {
  std::string policy;
  std::size_t runs = 0, converged = 0;  // runs, and runs that reach convergence_accuracy
  // Quartiles of the convergence epoch; a run that never converges counts as +inf, so the median
  // is +inf ("not reached") unless more than half of the runs converge.
  quartiles convergence;
  int not_reached_within = 0;   // the fewest epochs of a non-converged run (">E"); 0 if none
  double best_test_acc = 0;     // median over runs of the best held-out accuracy of a run
  double last_test_acc = 0;     // median over runs of the held-out accuracy of the last epoch
  double final_train_loss = 0;  // median over runs of the training loss of the last epoch
  double seconds = 0;           // median over runs of the wall time of a run (last `seconds`)
  std::size_t shortest = 0, longest = 0;  // fewest and most epochs of a run
};

/// \brief The summary of `runs` (one policy, one run per seed): convergence epoch quartiles
/// (never converged = +inf), medians of the best and last held-out accuracy, of the final
/// training loss (NaN counts as +inf) and of the wall time. Each run contributes its own last
/// epoch. O(R E + R log R).
/// \throws std::invalid_argument if `runs` is empty or a run has no epochs.
inline policy_summary summarize(const std::string& policy, std::span<const run_data> runs,
                                double threshold = convergence_accuracy) {
  if (runs.empty())
    throw std::invalid_argument("semfocus::runner::summarize: no runs for policy '" + policy + "'");
  policy_summary s;
  s.policy = policy;
  s.runs = runs.size();
  s.shortest = runs[0].size();
  std::vector<double> conv, best, last, loss, secs;
  for (const run_data& r : runs) {
    if (r.size() == 0)
      throw std::invalid_argument("semfocus::runner::summarize: run '" + r.source +
                                  "' has no epochs");
    s.shortest = std::min(s.shortest, r.size());
    s.longest = std::max(s.longest, r.size());
    const int e = convergence_epoch(r, threshold);
    if (e >= 0) {
      ++s.converged;
      conv.push_back(double(e));
    } else {
      conv.push_back(std::numeric_limits<double>::infinity());
      s.not_reached_within = s.not_reached_within == 0
                                 ? r.epoch.back()
                                 : std::min(s.not_reached_within, r.epoch.back());
    }
    best.push_back(stat_value(*std::max_element(r.test_acc.begin(), r.test_acc.end())));
    last.push_back(stat_value(r.test_acc.back()));
    loss.push_back(stat_value(r.train_loss.back()));
    secs.push_back(stat_value(r.seconds.back()));
  }
  s.convergence = quartiles_of(std::move(conv));
  s.best_test_acc = median_of(std::move(best));
  s.last_test_acc = median_of(std::move(last));
  s.final_train_loss = median_of(std::move(loss));
  s.seconds = median_of(std::move(secs));
  return s;
}

/// \brief `x` with `decimals` decimals ("%.*f"), or "inf"/"nan". O(1).
inline std::string format_number(double x, int decimals) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, x);
  return buf;
}

/// \brief A convergence-epoch statistic as a table cell: an integer without decimals, a half
/// (a median of an even count) with one, +inf as `inf_text`. O(1).
inline std::string format_epoch(double x, const std::string& inf_text) {
  if (std::isinf(x)) return inf_text;
  return format_number(x, x == std::floor(x) ? 0 : 1);
}

/// \brief The Markdown table of `rows`, one line per policy:
/// | policy | converged | convergence epoch (median) | 25-75% | best held-out acc | last held-out
/// acc | final train loss | seconds/run |. Accuracies have 3 decimals, losses 4, seconds 1; a
/// +inf median reads "not reached", a +inf quartile ">E" (E = policy_summary::
/// not_reached_within). Ends with a newline. O(total length).
inline std::string markdown_table(std::span<const policy_summary> rows) {
  std::ostringstream out;
  out << "| policy | converged | convergence epoch (median) | 25-75% | best held-out acc | "
         "last held-out acc | final train loss | seconds/run |\n"
      << "|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const policy_summary& s : rows) {
    std::ostringstream beyond_text;  // (">" + std::to_string(...) trips GCC 12's -Wrestrict)
    beyond_text << '>' << s.not_reached_within;
    const std::string beyond = beyond_text.str();
    out << "| " << s.policy << " | " << s.converged << "/" << s.runs << " | "
        << format_epoch(s.convergence.median, "not reached") << " | "
        << format_epoch(s.convergence.q25, beyond) << " - "
        << format_epoch(s.convergence.q75, beyond) << " | " << format_number(s.best_test_acc, 3)
        << " | " << format_number(s.last_test_acc, 3) << " | "
        << format_number(s.final_train_loss, 4) << " | " << format_number(s.seconds, 1) << " |\n";
  }
  return out.str();
}

/// \brief The notes that explain markdown_table(rows): how the statistics are computed, how
/// never-converged runs enter, and one line per policy whose runs have unequal lengths. O(rows).
inline std::string markdown_notes(std::span<const policy_summary> rows) {
  std::ostringstream out;
  out << "Medians and 25-75% ranges are over seeds (type-7 quantiles, numpy's default). The "
         "convergence epoch is the first epoch with training accuracy >= 95%; a run that never "
         "reaches it counts as +inf, so the median reads \"not reached\" unless more than half "
         "of the runs converge, and \">E\" means not reached within E epochs. Best held-out acc "
         "is the median over seeds of each run's best epoch; last held-out acc and final train "
         "loss are taken at each run's last epoch. A NaN loss counts as +inf.\n";
  for (const policy_summary& s : rows)
    if (s.shortest != s.longest)
      out << "\nRuns of unequal length for " << s.policy << ": " << s.shortest << " to "
          << s.longest << " epochs; the curves at the later epochs aggregate only the runs "
          << "that reach them, and the last-epoch figures use each run's own last epoch.\n";
  return out.str();
}

}  // namespace semfocus::runner
