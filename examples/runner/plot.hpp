// SPDX-License-Identifier: MIT
#pragma once

// Figures of the experiment runner (examples/compare.cpp): one band CSV per policy (per epoch the
// median and 25%/75% quantiles of every metric over seeds) and a gnuplot script that draws the
// paper's two figures, training loss and held-out accuracy against epoch, each policy a median
// line over a shaded 25-75% band. Also the POSIX process helpers the runner uses (spawn a program
// with its output sent to a file, find a program on PATH, quote a command line for the shell,
// the last lines of a log). POSIX only.

#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "runner/stats.hpp"

extern char** environ;

namespace semfocus::runner {

/// \brief Starts `argv[0]` (looked up on PATH if it has no '/') with arguments `argv`, its
/// standard output and error written to `output` (created or truncated; "/dev/null" to discard)
/// and no standard input. Returns the child's pid; wait for it with waitpid. O(argc).
/// \throws std::runtime_error naming the program if it cannot be started.
inline pid_t spawn_process(const std::vector<std::string>& argv, const std::string& output) {
  if (argv.empty()) throw std::runtime_error("spawn_process: empty command");
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start '" + argv[0] + "': " + std::strerror(rc));
  return pid;
}

/// \brief Waits for `pid` and describes how it ended: "" for exit status 0, else "exit status
/// N" or "killed by signal N". Blocks until the child ends.
inline std::string wait_process(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return std::string("waitpid failed: ") + std::strerror(errno);
  if (WIFEXITED(status))
    return WEXITSTATUS(status) == 0 ? "" : "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "ended with wait status " + std::to_string(status);
}

/// \brief Whether an executable file `program` is in a directory of $PATH. O(PATH entries).
inline bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  std::stringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':'))
    if (!dir.empty() && access((dir + "/" + program).c_str(), X_OK) == 0) return true;
  return false;
}

/// \brief `s` as one word of a POSIX shell command line: unchanged if it has only letters,
/// digits and -_=.,:/+@%, else single-quoted ('\\'' for a quote inside). O(length).
inline std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                        "0123456789-_=.,:/+@%") == std::string::npos)
    return s;
  std::string q = "'";
  for (const char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

/// \brief The last `count` lines of the file at `path`, each indented by 4 spaces and ended by a
/// newline ("" if the file cannot be read), to quote a failed run's log. O(file size).
inline std::string last_lines(const std::string& path, std::size_t count) {
  std::ifstream in(path);
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
    if (lines.size() > count) lines.pop_front();
  }
  std::string out;
  for (const auto& l : lines) out += "    " + l + "\n";
  return out;
}

/// \brief Whether gnuplot accepts `set terminal <terminal>`: runs
/// `gnuplot -e "set terminal <terminal>"` with its output discarded and checks the exit status.
/// False if gnuplot cannot be started. Blocks for one gnuplot start.
inline bool gnuplot_has_terminal(const std::string& terminal) {
  try {
    return wait_process(spawn_process({"gnuplot", "-e", "set terminal " + terminal}, "/dev/null"))
        .empty();
  } catch (const std::runtime_error&) {
    return false;
  }
}

/// \brief The band CSV name of `policy`: "band_<policy>.csv" with ':', '+', '/' replaced by '_'.
inline std::string band_file_name(std::string policy) {
  for (char& ch : policy)
    if (ch == ':' || ch == '+' || ch == '/') ch = '_';
  return "band_" + policy + ".csv";
}

/// \brief The band CSV of `c`: header epoch,runs, then <metric>_median,<metric>_q25,<metric>_q75
/// for train_loss, train_acc, test_loss and test_acc (columns 3-5, 6-8, 9-11, 12-14), one row per
/// epoch; values with 6 significant digits, +inf as "inf". O(epochs).
inline std::string band_csv_text(const policy_curves& c) {
  std::ostringstream out;
  out << "epoch,runs";
  for (const std::string_view m : metric_names)
    out << ',' << m << "_median," << m << "_q25," << m << "_q75";
  out << '\n';
  for (const epoch_band& b : c.epochs) {
    out << b.epoch << ',' << b.runs;
    for (const quartiles& q : b.values) out << ',' << q.median << ',' << q.q25 << ',' << q.q75;
    out << '\n';
  }
  return out.str();
}

/// \brief Writes `text` to the file `path` (created or truncated). O(length).
/// \throws std::runtime_error naming the file if it cannot be written.
inline void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) throw std::runtime_error("cannot write '" + path + "'");
}

/// \brief `s` as a gnuplot single-quoted string ('' stands for a quote inside). O(length).
inline std::string gnuplot_quote(const std::string& s) {
  std::string q = "'";
  for (const char ch : s) q += ch == '\'' ? std::string("''") : std::string(1, ch);
  return q + "'";
}

/// \brief The colour of the i-th policy (cycles through 8 distinguishable colours). O(1).
inline std::string policy_colour(std::size_t i) {
  constexpr std::array<const char*, 8> colours = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                                  "#9467bd", "#8c564b", "#e377c2", "#17becf"};
  return colours[i % colours.size()];
}

/// \brief One curve of a figure: the policy's legend label and its band CSV (a path relative to
/// the directory gnuplot runs in).
struct plot_series {
  std::string policy, band_csv;
};

/// \brief The gnuplot script of the two figures: `train_loss.png` (training loss, band columns
/// 3-5) and `test_acc.png` (held-out accuracy, columns 12-14), each series a shaded 25-75% band
/// and a median line in its own colour. `terminal` is "pngcairo" or "png" (drawn with
/// truecolor for the transparent bands); `title` prefixes both titles. Paths are relative to the
/// directory gnuplot runs in. O(series).
inline std::string gnuplot_script(const std::string& title, std::span<const plot_series> series,
                                  const std::string& terminal) {
  std::ostringstream out;
  out << "# Drawn by semfocus compare: run `gnuplot plots.gp` in this directory.\n"
      << "set datafile separator ','\n"
      << (terminal == "pngcairo" ? "set terminal pngcairo noenhanced size 960,600 font ',11'\n"
                                 : "set terminal png truecolor noenhanced size 960,600\n")
      << "set style fill transparent solid 0.2 noborder\n"
      << "set grid\nset key outside right top\nset xlabel 'epoch'\n";
  struct figure {
    const char* file;
    const char* label;
    int median_column;
  };
  constexpr std::array<figure, 2> figures = {figure{"train_loss.png", "training loss", 3},
                                             figure{"test_acc.png", "held-out accuracy", 12}};
  for (const figure& f : figures) {
    out << "\nset output " << gnuplot_quote(f.file) << "\n"
        << "set title "
        << gnuplot_quote(title + ": " + f.label + " (median over seeds, 25-75% band)")
        << "\nset ylabel " << gnuplot_quote(f.label) << "\nplot ";
    for (std::size_t i = 0; i < series.size(); ++i) {
      const std::string file = gnuplot_quote(series[i].band_csv);
      const std::string colour = gnuplot_quote(policy_colour(i));
      out << (i ? ", \\\n     " : "") << file << " skip 1 using 1:" << f.median_column + 1 << ":"
          << f.median_column + 2 << " with filledcurves lc rgb " << colour << " notitle, \\\n     "
          << file << " skip 1 using 1:" << f.median_column << " with lines lw 2 lc rgb " << colour
          << " title " << gnuplot_quote(series[i].policy);
    }
    out << "\nunset output\n";
  }
  return out.str();
}

/// \brief The gnuplot script of examples/theory.cpp's figure `landscape.png`: two heat maps side
/// by side, left.band_csv and right.band_csv being landscape CSVs (header a,b,loss, one grid row
/// per block), titled by their `policy` fields, on one colour scale [lo, hi]. O(1).
inline std::string landscape_script(const std::string& terminal, const plot_series& left,
                                    const plot_series& right, double lo, double hi) {
  std::ostringstream out;
  out << "# Drawn by semfocus theory: run `gnuplot landscape.gp` in this directory.\n"
      << "set datafile separator ','\n"
      << (terminal == "pngcairo" ? "set terminal pngcairo noenhanced size 1200,560 font ',11'\n"
                                 : "set terminal png noenhanced size 1200,560\n")
      << "set output 'landscape.png'\n"
      << "set multiplot layout 1,2 title 'training loss on theta + a d1 + b d2 "
      << "(directions normalised per tensor)'\n"
      << "set size ratio -1\nset xlabel 'a'\nset ylabel 'b'\nset palette rgbformulae 33,13,10\n"
      << "set format cb '%g'\nset cbrange [" << lo << ":" << hi
      << "]\nset autoscale xfix\nset autoscale yfix\n";
  for (const plot_series* s : {&left, &right})
    out << "set title " << gnuplot_quote(s->policy) << "\nplot " << gnuplot_quote(s->band_csv)
        << " skip 1 using 1:2:3 with image notitle\n";
  out << "unset multiplot\nunset output\n";
  return out.str();
}

/// \brief Writes `script` to `dir`/`name` and runs gnuplot on it in `dir`, its output in
/// `dir`/<name without .gp>.log. Returns "" on success, else how gnuplot ended (wait_process).
/// Blocks for one gnuplot run. \throws std::runtime_error if the script cannot be written or
/// gnuplot cannot be started.
inline std::string run_gnuplot(const std::string& dir, const std::string& name,
                               const std::string& script) {
  write_text_file(dir + "/" + name, script);
  const std::string log = dir + "/" + name.substr(0, name.rfind(".gp")) + ".log";
  return wait_process(spawn_process({"gnuplot", "-e", "cd " + gnuplot_quote(dir), name}, log));
}

/// \brief What write_figures did.
struct figures_result {
  std::vector<std::string> band_csvs;  // written band CSVs (full paths)
  std::string script;                  // the gnuplot script's path, "" if not written
  std::string terminal;                // "pngcairo", "png", or "" when nothing was drawn
  std::string message;                 // one line for the user: what was drawn or why not
  bool drawn = false;                  // true when gnuplot wrote both PNGs
};

/// \brief Writes `dir`/band_<policy>.csv for every curve and, when gnuplot is on PATH,
/// `dir`/plots.gp and runs it in `dir` to draw `dir`/train_loss.png and `dir`/test_acc.png
/// (terminal pngcairo if gnuplot accepts it, else png). Without gnuplot only the CSVs are
/// written and the message says so; a failing gnuplot is reported in the message with its log
/// `dir`/plots.log. Blocks for up to three gnuplot runs; O(total epochs) otherwise.
/// \throws std::runtime_error if a file cannot be written.
inline figures_result write_figures(const std::string& dir, const std::string& title,
                                    std::span<const policy_curves> curves) {
  figures_result r;
  std::vector<plot_series> series;
  for (const policy_curves& c : curves) {
    const std::string name = band_file_name(c.policy);
    write_text_file(dir + "/" + name, band_csv_text(c));
    r.band_csvs.push_back(dir + "/" + name);
    series.push_back({c.policy, name});
  }
  if (!on_path("gnuplot")) {
    r.message = "gnuplot is not on PATH: wrote the band CSVs only (no PNGs)";
    return r;
  }
  r.terminal = gnuplot_has_terminal("pngcairo") ? "pngcairo" : "png";
  r.script = dir + "/plots.gp";
  const std::string how = run_gnuplot(dir, "plots.gp", gnuplot_script(title, series, r.terminal));
  r.drawn = how.empty();
  r.message = r.drawn ? "drew " + dir + "/train_loss.png and " + dir + "/test_acc.png (gnuplot, " +
                            r.terminal + ")"
                      : "gnuplot failed (" + how + "), see " + dir + "/plots.log; the band " +
                            "CSVs and " + r.script + " are written";
  return r;
}

}  // namespace semfocus::runner
