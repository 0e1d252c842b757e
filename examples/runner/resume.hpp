// SPDX-License-Identifier: MIT
#pragma once

// A training run's state at the end of an epoch (train --checkpoint-every, --resume): everything
// the later epochs depend on -- parameters, optimiser state, learning rate, the dropout generator,
// the summary so far (the batch order is replayed from the seed) -- so that a resumed run gives the
// same bits as one that was never interrupted. Plain text; every real as a hexadecimal float, so
// the round trip is exact:
//
//   semfocus-train-state 1
//   fingerprint <the options that fix the bits, to the end of the line>
//   epoch <epochs done>
//   lr <next epoch's learning rate>
//   summary <convergence epoch or -1> <best test acc> <last test acc> <final train loss>
//           <seconds so far>                                              (one line)
//   dropout_rng <std::mt19937_64 state>
//   adam_steps <t>                 (0 for SGD)
//   <a semfocus-checkpoint of the parameters>
//   <two more, Adam's first and second moments, when t > 0>

#include <semfocus/nn/nn.hpp>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace semfocus::runner {

/// \brief What a run carries from one epoch to the next, besides parameters and optimiser.
struct run_state {
  std::string fingerprint;
  index_t epoch = 0;
  double lr = 0;
  index_t convergence = -1;
  double best_test = 0, last_test = 0, final_train_loss = 0, seconds = 0;
  std::string dropout_rng;
};

namespace detail {

template <class T>
std::vector<nn::parameter<T>> named_copies(const std::vector<nn::matrix<T>>& values,
                                           const nn::parameter_list<T>& like, const char* prefix) {
  std::vector<nn::parameter<T>> out;
  for (std::size_t x = 0; x < values.size(); ++x) {
    nn::parameter<T> p;
    p.name = prefix + like[x]->name;
    p.value = values[x];
    out.push_back(std::move(p));
  }
  return out;
}

template <class T>
nn::parameter_list<T> pointers(std::vector<nn::parameter<T>>& ps) {
  nn::parameter_list<T> list;
  for (auto& p : ps) list.push_back(&p);
  return list;
}

inline std::string field(std::istream& in, const std::string& key, const std::string& path) {
  std::string line;
  std::getline(in, line);
  semfocus::detail::require(line.rfind(key + ' ', 0) == 0, "train state '", path,
                            "': expected a line starting with '", key, "', got '",
                            line.substr(0, 60), "'");
  return line.substr(key.size() + 1);
}

}  // namespace detail

/// \brief Writes the state to `path` atomically (a temporary file renamed over it, so a run killed
/// mid-write leaves the previous state). `adam` is null for SGD. O(parameters).
/// \throws invalid_argument if the file cannot be written.
template <class T>
void save_run_state(const std::string& path, const run_state& s, const nn::model_config& config,
                    const nn::parameter_list<T>& params, const nn::adam<T>* adam) {
  using nn::detail::hex_real;
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    semfocus::detail::require(bool(out), "train state: cannot write '", tmp, "'");
    const long t = adam ? adam->steps() : 0;
    out << "semfocus-train-state 1\nfingerprint " << s.fingerprint << "\nepoch " << s.epoch
        << "\nlr " << hex_real(s.lr) << "\nsummary " << s.convergence << ' '
        << hex_real(s.best_test) << ' ' << hex_real(s.last_test) << ' '
        << hex_real(s.final_train_loss) << ' ' << hex_real(s.seconds) << "\ndropout_rng "
        << s.dropout_rng << "\nadam_steps " << t << '\n';
    nn::write_checkpoint(out, config, params, "parameters");
    if (t > 0) {
      auto m = detail::named_copies(adam->first_moments(), params, "adam_m.");
      auto v = detail::named_copies(adam->second_moments(), params, "adam_v.");
      nn::write_checkpoint(out, config, detail::pointers(m), "adam first moments");
      nn::write_checkpoint(out, config, detail::pointers(v), "adam second moments");
    }
    out.close();
    semfocus::detail::require(bool(out), "train state: writing '", tmp, "' failed");
  }
  std::filesystem::rename(tmp, path);
}

/// \brief Reads the state at `path` into `params` (and `adam`, null for SGD) and returns the rest.
/// Nothing is restored unless the whole file parses and its fingerprint equals `fingerprint`.
/// O(parameters). \throws invalid_argument naming what does not match.
template <class T>
run_state load_run_state(const std::string& path, const std::string& fingerprint,
                         const nn::parameter_list<T>& params, nn::adam<T>* adam) {
  std::ifstream in(path);
  semfocus::detail::require(bool(in), "train state: cannot read '", path, "'");
  std::string line;
  std::getline(in, line);
  semfocus::detail::require(line == "semfocus-train-state 1", "train state '", path,
                            "': not a train state (first line '", line.substr(0, 40), "')");
  run_state s;
  s.fingerprint = detail::field(in, "fingerprint", path);
  semfocus::detail::require(s.fingerprint == fingerprint, "train state '", path,
                            "' was written by a run with other options: '", s.fingerprint,
                            "', this run has '", fingerprint, "'");
  const auto real = [&](const std::string& w) { return nn::detail::parse_real(w, "train state"); };
  s.epoch = std::stoll(detail::field(in, "epoch", path));
  s.lr = real(detail::field(in, "lr", path));
  std::istringstream summary(detail::field(in, "summary", path));
  std::string best, last, loss, secs;
  summary >> s.convergence >> best >> last >> loss >> secs;
  semfocus::detail::require(bool(summary), "train state '", path, "': bad summary line");
  s.best_test = real(best);
  s.last_test = real(last);
  s.final_train_loss = real(loss);
  s.seconds = real(secs);
  s.dropout_rng = detail::field(in, "dropout_rng", path);
  const long t = std::stol(detail::field(in, "adam_steps", path));
  semfocus::detail::require(t >= 0 && (t == 0 || adam), "train state '", path, "': adam_steps ", t,
                            " does not fit this run's optimiser");
  const nn::checkpoint values = nn::read_checkpoint(in);
  std::vector<nn::matrix<T>> m, v;
  if (t > 0) {
    std::vector<nn::matrix<T>> zeros;
    for (const auto* p : params)
      zeros.push_back(nn::matrix<T>::Zero(p->value.rows(), p->value.cols()));
    auto pm = detail::named_copies(zeros, params, "adam_m.");
    auto pv = detail::named_copies(zeros, params, "adam_v.");
    nn::restore(detail::pointers(pm), nn::read_checkpoint(in));
    nn::restore(detail::pointers(pv), nn::read_checkpoint(in));
    for (std::size_t x = 0; x < params.size(); ++x) {
      m.push_back(std::move(pm[x].value));
      v.push_back(std::move(pv[x].value));
    }
  }
  nn::restore(params, values);
  if (adam) adam->set_state(t, std::move(m), std::move(v));
  return s;
}

}  // namespace semfocus::runner
