// SPDX-License-Identifier: MIT
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <istream>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "semfocus/nn/model.hpp"
#include "semfocus/nn/tensor.hpp"

// Saving and loading trained parameters in a plain-text format that round-trips exactly:
//
//   semfocus-checkpoint 1
//   config <vocab> <classes> <blocks> <d> <heads> <d_mlp> <relu|gelu|mish> <ln_eps> <first_ln_eps>
//          <seed>                                                   (one line)
//   meta <free text to the end of the line, e.g. "task=parity policy=topk:5">
//   tensors <count>
//   <name> <rows> <cols>               then rows lines of cols values each; repeated count times
//   end
//
// Every real number (eps and values) is a C99 hexadecimal float ("%a", e.g. 0x1.99999ap-4), so a
// float or double survives a save and a load bit for bit; on load any strtod-readable number is
// accepted. Names have no whitespace. The file is independent of the scalar type of the model.
namespace semfocus::nn {

/// \brief One stored tensor: name, shape and values (row-major) in double.
struct stored_tensor {
  std::string name;
  index_t rows = 0, cols = 0;
  std::vector<double> values;
};

/// \brief The contents of a checkpoint: the model's configuration, a free-text line and the
/// tensors in the model's parameter order.
struct checkpoint {
  model_config config;
  std::string meta;
  std::vector<stored_tensor> tensors;
};

namespace detail {

inline std::string hex_real(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a", x);
  return buf;
}

[[noreturn]] inline void checkpoint_error(const std::string& what) {
  throw invalid_argument("semfocus::nn::read_checkpoint: " + what);
}

inline double parse_real(const std::string& token, const char* what) {
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(token.c_str(), &end);
  if (token.empty() || end != token.c_str() + token.size() || !std::isfinite(v))
    checkpoint_error(std::string(what) + " must be a finite number, got '" + token + "'");
  return v;
}

inline index_t parse_count(std::istream& in, const char* what) {
  long long v = -1;
  if (!(in >> v) || v < 0) checkpoint_error(std::string(what) + " must be an integer >= 0");
  return index_t(v);
}

inline void expect_word(std::istream& in, const char* word) {
  std::string got;
  if (!(in >> got) || got != word)
    checkpoint_error(std::string("expected '") + word + "', got '" + got + "'");
}

}  // namespace detail

/// \brief Writes `config`, `meta` (one line; newlines become spaces) and every parameter's value.
/// O(total parameter count). \throws invalid_argument if a name contains whitespace or the stream
/// fails.
template <class T>
void write_checkpoint(std::ostream& out, const model_config& config,
                      const parameter_list<T>& params, std::string_view meta = {}) {
  using detail::hex_real;
  out << "semfocus-checkpoint 1\nconfig " << config.vocab << ' ' << config.classes << ' '
      << config.blocks << ' ' << config.d << ' ' << config.heads << ' ' << config.d_mlp << ' '
      << to_string(config.activation) << ' ' << hex_real(config.ln_eps) << ' '
      << hex_real(config.first_ln_eps) << ' ' << config.seed << "\nmeta ";
  for (const char ch : meta) out << (ch == '\n' || ch == '\r' ? ' ' : ch);
  out << "\ntensors " << params.size() << '\n';
  for (const parameter<T>* p : params) {
    semfocus::detail::require(
        !p->name.empty() && p->name.find_first_of(" \t\r\n") == std::string::npos,
        "semfocus::nn::write_checkpoint: parameter names must be non-empty without whitespace, "
        "got '",
        p->name, "'");
    out << p->name << ' ' << p->value.rows() << ' ' << p->value.cols() << '\n';
    for (index_t r = 0; r < p->value.rows(); ++r)
      for (index_t c = 0; c < p->value.cols(); ++c)
        out << hex_real(double(p->value(r, c))) << (c + 1 == p->value.cols() ? '\n' : ' ');
  }
  out << "end\n";
  semfocus::detail::require(bool(out), "semfocus::nn::write_checkpoint: the stream failed");
}

/// \brief As above, to the file at `path` (created or replaced).
/// \throws invalid_argument if the file cannot be written.
template <class T>
void save_checkpoint(const std::string& path, const model_config& config,
                     const parameter_list<T>& params, std::string_view meta = {}) {
  std::ofstream out(path);
  semfocus::detail::require(bool(out), "semfocus::nn::save_checkpoint: cannot open path '", path,
                            "' for writing");
  write_checkpoint(out, config, params, meta);
}

/// \brief Largest side and size of a stored tensor that read_checkpoint accepts (a guard against
/// corrupt shapes, far above any model of this library).
inline constexpr index_t max_tensor_side = index_t(1) << 31;
inline constexpr index_t max_tensor_size = index_t(1) << 34;

/// \brief Parses a checkpoint written by write_checkpoint. O(file size).
/// \throws invalid_argument naming the first thing that is not as the format above says.
inline checkpoint read_checkpoint(std::istream& in) {
  using detail::checkpoint_error;
  checkpoint c;
  std::string word;
  detail::expect_word(in, "semfocus-checkpoint");
  if (!(in >> word) || word != "1") checkpoint_error("version must be 1, got '" + word + "'");
  detail::expect_word(in, "config");
  model_config& m = c.config;
  m.vocab = detail::parse_count(in, "config vocab");
  m.classes = detail::parse_count(in, "config classes");
  m.blocks = detail::parse_count(in, "config blocks");
  m.d = detail::parse_count(in, "config d");
  m.heads = detail::parse_count(in, "config heads");
  m.d_mlp = detail::parse_count(in, "config d_mlp");
  in >> word;
  if (word == "relu" || word == "gelu" || word == "mish")
    m.activation = word == "relu"   ? activation::relu
                   : word == "gelu" ? activation::gelu
                                    : activation::mish;
  else
    checkpoint_error("config activation must be relu, gelu or mish, got '" + word + "'");
  in >> word;
  m.ln_eps = detail::parse_real(word, "config ln_eps");
  in >> word;
  m.first_ln_eps = detail::parse_real(word, "config first_ln_eps");
  in >> word;
  if (word.empty() || word.size() > 20 || word.find_first_not_of("0123456789") != std::string::npos)
    checkpoint_error("config seed must be an unsigned integer, got '" + word + "'");
  errno = 0;
  m.seed = std::strtoull(word.c_str(), nullptr, 10);
  if (errno == ERANGE) checkpoint_error("config seed must be < 2^64, got '" + word + "'");
  try {
    m.validate();
  } catch (const invalid_argument& e) {
    checkpoint_error(std::string("config: ") + e.what());
  }
  detail::expect_word(in, "meta");
  std::getline(in, c.meta);
  if (!c.meta.empty() && c.meta.front() == ' ') c.meta.erase(0, 1);
  detail::expect_word(in, "tensors");
  const index_t count = detail::parse_count(in, "tensors count");
  for (index_t t = 0; t < count; ++t) {
    stored_tensor s;
    if (!(in >> s.name)) checkpoint_error("tensor " + std::to_string(t) + " is missing");
    s.rows = detail::parse_count(in, "tensor rows");
    s.cols = detail::parse_count(in, "tensor cols");
    if (s.rows > max_tensor_side || s.cols > max_tensor_side || s.rows * s.cols > max_tensor_size)
      checkpoint_error("tensor '" + s.name + "' has an implausible shape [" +
                       std::to_string(s.rows) + ", " + std::to_string(s.cols) + "]");
    // Values are appended as read, so a truncated file fails before a large allocation.
    const std::string what = "a value of tensor '" + s.name + "'";
    for (index_t x = 0; x < s.rows * s.cols; ++x) {
      if (!(in >> word)) checkpoint_error("tensor '" + s.name + "' is truncated");
      s.values.push_back(detail::parse_real(word, what.c_str()));
    }
    c.tensors.push_back(std::move(s));
  }
  detail::expect_word(in, "end");
  return c;
}

/// \brief As above, from the file at `path`. \throws invalid_argument if it cannot be read.
inline checkpoint load_checkpoint(const std::string& path) {
  std::ifstream in(path);
  semfocus::detail::require(bool(in), "semfocus::nn::load_checkpoint: cannot open path '", path,
                            "' for reading");
  try {
    return read_checkpoint(in);
  } catch (const invalid_argument& e) {
    throw invalid_argument(std::string(e.what()) + " (in '" + path + "')");
  }
}

/// \brief Copies the stored values into `params` (values converted to T; gradients untouched).
/// The tensors must match in count, order, name and shape; nothing is copied unless all do.
/// O(total size). \throws invalid_argument naming the first mismatch.
template <class T>
void restore(const parameter_list<T>& params, const checkpoint& c) {
  constexpr const char* fn = "semfocus::nn::restore";
  semfocus::detail::require(c.tensors.size() == params.size(), fn, ": the checkpoint has ",
                            c.tensors.size(), " tensors, the model expects ", params.size());
  for (std::size_t t = 0; t < params.size(); ++t) {  // every check before any copy
    const parameter<T>& p = *params[t];
    const stored_tensor& s = c.tensors[t];
    semfocus::detail::require(s.name == p.name, fn, ": tensor ", t, " must be named '", p.name,
                              "', got '", s.name, "'");
    semfocus::detail::require(s.rows == p.value.rows() && s.cols == p.value.cols() &&
                                  s.values.size() == std::size_t(s.rows * s.cols),
                              fn, ": tensor '", p.name, "' must be [", p.value.rows(), ", ",
                              p.value.cols(), "], got [", s.rows, ", ", s.cols, "] with ",
                              s.values.size(), " values");
  }
  for (std::size_t t = 0; t < params.size(); ++t) {
    parameter<T>& p = *params[t];
    const stored_tensor& s = c.tensors[t];
    for (index_t r = 0; r < s.rows; ++r)
      for (index_t col = 0; col < s.cols; ++col)
        p.value(r, col) = T(s.values[std::size_t(r * s.cols + col)]);
  }
}

}  // namespace semfocus::nn
