// SPDX-License-Identifier: MIT
// The paper's theory on trained models: loads a full-attention and a top-k model saved by
// `train --save` and reports (1) the Table 6 quantities of each (dispersion, separation, sink
// counts at the paper's quantiles, pooled over layers, heads, samples and queries), (2) the
// stability conditions LHS_W and LHS_X on them (bounds::stability_table), and (3) the empirical
// Lipschitz constant of each model's loss by the landscape method (nn/landscape.hpp), with the two
// landscapes drawn side by side. `theory --help` explains every option.
#include <semfocus/bounds/bounds.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "runner/plot.hpp"
#include "runner/training.hpp"

namespace {

namespace runner = semfocus::runner;
namespace nn = semfocus::nn;
namespace bounds = semfocus::bounds;
using semfocus::index_t;
using T = float;

constexpr const char* usage = R"(usage: theory --full PATH --topk PATH [options]

Loads a full-attention model and a top-k model saved by `train --save` (or `compare --save`),
rebuilds each one's training data from its checkpoint's meta line, and reports the paper's
theory on them:
  1. per model, the quantiles (0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 100%) of the dispersion of the
     scores each softmax normalises over (full: delta_s; top-k: delta_h), of the separation
     Delta_h (top-k) and of the sink counts, pooled over layers, heads, samples and queries, on
     the first --batches x --batch-size training examples (the paper: 10 x 100);
  2. Table 6: delta_s (full) and delta_h, beta (top-k) at 75/90/95/100% against Delta_h at
     25/10/5/0%, and the stability conditions LHS_W, LHS_X (< 1: top-k more stable);
  3. the empirical Lipschitz constant of each model's training loss on the same examples: two
     random directions normalised per tensor, the loss on a G x G grid over [-E, E]^2, and the
     50/75/95/99% quantiles of |dL| / step over neighbouring grid points within radius r.

  --full PATH          checkpoint of a model trained with --policy full
  --topk PATH          checkpoint of a model trained with --policy topk:K (k = K)
  --batches N          training batches for the quantities and the landscape (default 10)
  --batch-size N       examples per batch (default 100)
  --grid G             landscape grid points per axis, >= 2 (default 21; the paper: 200)
  --extent E           the grid covers [-E, E]^2 (default 1)
  --radii LIST         comma-separated radii for the Lipschitz quantiles (default
                       0.1,0.25,0.5,0.75,1)
  --seed S             seed of the random directions (default 1)
  --threads N          threads evaluating the grid, each with its own model copy (default:
                       hardware threads, here {hw})
  --out DIR            output directory (default theory_out)
  --help               this text

Output in DIR: theory.md (everything above as Markdown, with the command line),
landscape_full.csv and landscape_topk.csv (a,b,loss), lipschitz.csv
(model,radius,pairs,q50,q75,q95,q99) and, with gnuplot, landscape.gp and landscape.png (the two
landscapes side by side, heat map with contours, one colour scale).
Cost: G^2 + 1 forward passes over --batches x --batch-size examples per model, for the grid.
Exit status: 0 on success, 1 if a step fails, 2 for bad arguments.
)";

[[noreturn]] void fail(const std::string& msg) {
  std::fprintf(stderr, "theory: %s\n(run theory --help for the options)\n", msg.c_str());
  std::exit(2);
}

struct options {
  std::string full, topk, out = "theory_out";
  index_t batches = 10, batch_size = 100, grid = 21;
  double extent = 1;
  std::vector<double> radii{0.1, 0.25, 0.5, 0.75, 1.0};
  std::uint64_t seed = 1;
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
};

options parse(int argc, char** argv) {
  options o;
  for (int a = 1; a < argc; ++a) {
    const std::string arg = argv[a];
    if (arg == "--help" || arg == "-h") {
      std::string text = usage;
      text.replace(text.find("{hw}"), 4, std::to_string(options{}.threads));
      std::fputs(text.c_str(), stdout);
      std::exit(0);
    }
    if (arg.rfind("--", 0) != 0) fail("unexpected argument '" + arg + "'");
    if (a + 1 >= argc) fail(arg + " needs a value");
    const std::string name = arg.substr(2), value = argv[++a];
    const auto integer = [&](std::int64_t lo, std::int64_t hi) {
      const auto v = runner::parse_integer(value, lo);
      if (!v || *v > hi)
        fail(arg + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
             "], got '" + value + "'");
      return *v;
    };
    if (name == "full" || name == "topk" || name == "out")
      (name == "full" ? o.full : name == "topk" ? o.topk : o.out) = value;
    else if (name == "batches")
      o.batches = index_t(integer(1, 1000000));
    else if (name == "batch-size")
      o.batch_size = index_t(integer(1, 1000000));
    else if (name == "grid")
      o.grid = index_t(integer(2, 10000));
    else if (name == "seed")
      o.seed = std::uint64_t(integer(0, std::int64_t(1) << 62));
    else if (name == "threads")
      o.threads = unsigned(integer(1, 4096));
    else if (name == "extent") {
      const auto v = runner::parse_number(value, 0, true);
      if (!v) fail("--extent must be a finite number > 0, got '" + value + "'");
      o.extent = *v;
    } else if (name == "radii") {
      o.radii.clear();
      std::stringstream in(value);
      for (std::string part; std::getline(in, part, ',');) {
        const auto v = runner::parse_number(part, 0);
        if (!v) fail("--radii must be comma-separated numbers >= 0, got '" + value + "'");
        o.radii.push_back(*v);
      }
      if (o.radii.empty()) fail("--radii must name at least one radius");
    } else
      fail("unknown option " + arg);
  }
  if (o.full.empty() || o.topk.empty()) fail("--full PATH and --topk PATH are both required");
  return o;
}

// A loaded model with its data: the checkpoint, its meta fields, the rebuilt dataset and the
// indices of the examples the report uses.
struct loaded {
  std::string path, label;
  nn::checkpoint ckpt;
  std::map<std::string, std::string> meta;
  runner::policy_spec spec;
  semfocus::tasks::dataset data;
  runner::input_layout layout;
  std::vector<index_t> indices;
};

loaded load(const std::string& path, const std::string& label, const std::string& kind,
            const options& o) {
  loaded m{path, label, nn::load_checkpoint(path), {}, {}, {}, {}, {}};
  std::stringstream words(m.ckpt.meta);
  for (std::string w; words >> w;)
    if (const auto eq = w.find('='); eq != std::string::npos)
      m.meta[w.substr(0, eq)] = w.substr(eq + 1);
  for (const char* key : {"task", "policy", "seed", "train", "test", "length"})
    if (!m.meta.count(key))
      fail("--" + label + ": the checkpoint's meta line has no " + key +
           "= (was it written by train --save?): '" + m.ckpt.meta + "'");
  const auto spec = runner::parse_policy_spec(m.meta["policy"]);
  if (!spec || spec->kind != kind)
    fail("--" + label + " must be a model trained with " +
         (kind == "full" ? "--policy full" : "--policy topk:K") + ", got policy '" +
         m.meta["policy"] + "'");
  m.spec = *spec;
  const auto number = [&](const char* key, std::int64_t lo) {
    const auto v = runner::parse_integer(m.meta[key], lo);
    if (!v) fail("--" + label + ": meta " + key + " must be an integer >= " + std::to_string(lo));
    return *v;
  };
  m.data = semfocus::tasks::make_task(
      m.meta["task"], {std::uint64_t(number("seed", 0)), index_t(number("train", 1)),
                       index_t(number("test", 1)), index_t(number("length", 0))});
  // train --pad-to-mask records pad_multiple=M; without it, batches pad to their longest.
  m.layout =
      runner::make_layout(m.data, 0, m.meta.count("pad_multiple") ? number("pad_multiple", 1) : 0);
  if (m.ckpt.config.vocab != m.layout.vocab || m.ckpt.config.classes != m.data.num_classes)
    fail("--" + label + ": the checkpoint's vocabulary/classes (" +
         std::to_string(m.ckpt.config.vocab) + "/" + std::to_string(m.ckpt.config.classes) +
         ") do not match task " + m.meta["task"]);
  const index_t count = o.batches * o.batch_size;
  if (count > index_t(m.data.train.size()))
    fail("--batches x --batch-size = " + std::to_string(count) + " exceeds the " +
         std::to_string(m.data.train.size()) + " training examples of --" + label);
  m.indices.resize(std::size_t(count));
  for (index_t i = 0; i < count; ++i) m.indices[std::size_t(i)] = i;
  return m;
}

#if defined(SEMFOCUS_HAS_XSIMD)
const auto exec = semfocus::exec::simd.with_threads(1);
#else
const auto exec = semfocus::exec::reference;
#endif

template <class Policy>
using model_t = nn::encoder_classifier<Policy, std::remove_const_t<decltype(exec)>, T>;

template <class Policy>
model_t<Policy> make_model(const loaded& m, const Policy& p) {
  model_t<Policy> model(m.ckpt.config, p, exec);
  nn::restore(model.parameters(), m.ckpt);
  return model;
}

// Part 1: every layer's diagnostics on the report's batches; also the loss and accuracy there.
template <class Policy>
bounds::diagnostics_summary table6_quantities(const loaded& m, const Policy& p, double& loss,
                                              double& acc, const options& o) {
  model_t<Policy> model = make_model(m, p);
  std::vector<bounds::attention_diagnostics> all;
  for (index_t b = 0; b < o.batches; ++b) {
    const std::span<const index_t> idx(m.indices.data() + b * o.batch_size,
                                       std::size_t(o.batch_size));
    const runner::batch_data batch = runner::make_batch(m.data.train, idx, m.layout);
    model.forward(batch.tokens, batch.batch, batch.n);
    for (const auto& block : model.blocks)
      all.push_back(bounds::diagnose(p, block.attn.query_view(), block.attn.key_view(),
                                     block.attn.options()));
  }
  std::tie(loss, acc) = runner::evaluate(model, m.data.train, m.indices, m.layout);
  return bounds::summarize(all);
}

// Part 3: the loss landscape, grid rows split over threads (each its own model copy).
template <class Policy>
nn::landscape_grid landscape(const loaded& m, const Policy& p, const options& o) {
  model_t<Policy> model = make_model(m, p);
  nn::rng gen(o.seed);
  const auto params = model.parameters();
  const auto d1 = nn::normalized_direction(params, gen), d2 = nn::normalized_direction(params, gen);
  nn::landscape_grid grid{o.grid, o.extent, std::vector<double>(std::size_t(o.grid * o.grid))};
  const index_t parts = std::min<index_t>(index_t(o.threads), o.grid);
  std::vector<std::thread> workers;
  std::vector<std::string> errors(static_cast<std::size_t>(parts));
  for (index_t t = 0; t < parts; ++t)
    workers.emplace_back([&, t] {
      try {
        model_t<Policy> own = make_model(m, p);
        nn::fill_landscape(
            own.parameters(), d1, d2, grid, t * o.grid / parts, (t + 1) * o.grid / parts,
            [&] { return runner::evaluate(own, m.data.train, m.indices, m.layout).first; });
      } catch (const std::exception& e) {
        errors[std::size_t(t)] = e.what();
      }
    });
  for (std::thread& w : workers) w.join();
  for (const std::string& e : errors)
    if (!e.empty()) throw std::runtime_error(e);
  return grid;
}

// x with 4 significant digits ("%.4g"): the quantities span 1e-9 to hundreds.
std::string sig(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", x);
  return buf;
}

std::string quantile_row(const std::string& name, const bounds::quantile_summary& q) {
  std::ostringstream out;
  out << "| " << name << " | " << q.count;
  for (const double v : q.values) out << " | " << sig(v);
  out << " |\n";
  return out.str();
}

std::string landscape_csv(const nn::landscape_grid& g) {
  std::ostringstream out;
  out << "a,b,loss\n";
  for (index_t ib = 0; ib < g.points; ++ib) {
    for (index_t ia = 0; ia < g.points; ++ia)
      out << g.coord(ia) << ',' << g.coord(ib) << ',' << g.at(ia, ib) << '\n';
    out << '\n';  // gnuplot's grid-row separator
  }
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  try {
    std::filesystem::create_directories(o.out);
    const auto start = std::chrono::steady_clock::now();
    const loaded full = load(o.full, "full", "full", o), topk = load(o.topk, "topk", "topk", o);
    const semfocus::top_k topk_policy(topk.spec.k);

    std::ostringstream md;
    md << "# Theory on trained models\n\nCommand: `";
    for (int a = 0; a < argc; ++a) md << (a ? " " : "") << runner::shell_quote(argv[a]);
    md << "`\n\n| model | checkpoint | meta | loss | accuracy |\n|---|---|---|---|---|\n";
    double loss_f = 0, acc_f = 0, loss_t = 0, acc_t = 0;
    const auto sum_f = table6_quantities(full, semfocus::dense{}, loss_f, acc_f, o);
    const auto sum_t = table6_quantities(topk, topk_policy, loss_t, acc_t, o);
    md << "| full | " << full.path << " | " << full.ckpt.meta << " | " << sig(loss_f) << " | "
       << sig(acc_f) << " |\n"
       << "| top-k | " << topk.path << " | " << topk.ckpt.meta << " | " << sig(loss_t) << " | "
       << sig(acc_t) << " |\n\n"
       << "Loss and accuracy on the " << o.batches * o.batch_size
       << " training examples below (the first " << o.batches << " batches of " << o.batch_size
       << ").\n\n## Quantiles, pooled over " << full.ckpt.config.blocks << " + "
       << topk.ckpt.config.blocks << " layers, heads, samples and queries\n\n| quantity | count";
    for (const double l : bounds::paper_levels) md << " | " << sig(100 * l) << "%";
    md << " |\n|---|---";
    for (std::size_t i = 0; i < bounds::paper_levels.size(); ++i) md << "|---";
    md << "|\n"
       << quantile_row("full: dispersion delta_s", sum_f.dispersion)
       << quantile_row("full: sink count", sum_f.sink_count)
       << quantile_row("top-k: dispersion delta_h", sum_t.dispersion)
       << quantile_row("top-k: dispersion of all scores", sum_t.dispersion_all)
       << quantile_row("top-k: separation Delta_h", sum_t.separation)
       << quantile_row("top-k: sink count", sum_t.sink_count)
       << "\n## Table 6 and the stability conditions (k = " << topk.spec.k
       << "; < 1: top-k more stable)\n\n"
       << "| pairing | delta_s | delta_h | Delta_h | beta (count) | LHS_W | LHS_X |\n"
       << "|---|---|---|---|---|---|---|\n";
    for (const bounds::stability_row& r : bounds::stability_table(sum_f, sum_t, topk.spec.k))
      md << "| " << sig(100 * r.high) << "/" << sig(100 * r.low) << " | " << sig(r.delta_s) << " | "
         << sig(r.delta_h) << " | " << sig(r.separation) << " | " << sig(r.beta_count) << " | "
         << sig(r.lhs.w) << " | " << sig(r.lhs.x) << " |\n";
    std::printf("%s", md.str().c_str());
    std::fflush(stdout);

    const nn::landscape_grid grid_f = landscape(full, semfocus::dense{}, o);
    const nn::landscape_grid grid_t = landscape(topk, topk_policy, o);
    runner::write_text_file(o.out + "/landscape_full.csv", landscape_csv(grid_f));
    runner::write_text_file(o.out + "/landscape_topk.csv", landscape_csv(grid_t));
    std::ostringstream lip, csv;
    csv << "model,radius,pairs,q50,q75,q95,q99\n";
    lip << "\n## Empirical Lipschitz constant of the training loss\n\nGrid " << o.grid << " x "
        << o.grid << " over [-" << o.extent << ", " << o.extent
        << "]^2 (step h = " << sig(grid_f.step()) << "), directions seeded " << o.seed
        << "; quantiles of |dL| / h over neighbour pairs "
        << "within radius r.\n\n| model | r | pairs | 50% | 75% | 95% | 99% |\n"
        << "|---|---|---|---|---|---|---|\n";
    for (const auto& [name, grid] : {std::pair{"full", &grid_f}, std::pair{"top-k", &grid_t}})
      for (const nn::landscape_lipschitz& l : nn::neighbour_lipschitz(*grid, o.radii)) {
        lip << "| " << name << " | " << sig(l.radius) << " | " << l.pairs;
        csv << name << ',' << l.radius << ',' << l.pairs;
        for (const double q : l.quantile) {
          lip << " | " << sig(q);
          csv << ',' << q;
        }
        lip << " |\n";
        csv << '\n';
      }
    runner::write_text_file(o.out + "/lipschitz.csv", csv.str());
    const auto [lo_f, hi_f] = std::minmax_element(grid_f.loss.begin(), grid_f.loss.end());
    const auto [lo_t, hi_t] = std::minmax_element(grid_t.loss.begin(), grid_t.loss.end());
    std::string figure = "gnuplot is not on PATH: landscape CSVs only (no PNG)";
    if (runner::on_path("gnuplot")) {
      const std::string how = runner::run_gnuplot(
          o.out, "landscape.gp",
          runner::landscape_script(
              runner::gnuplot_has_terminal("pngcairo") ? "pngcairo" : "png",
              {"full", "landscape_full.csv"},
              {"top-k(" + std::to_string(topk.spec.k) + ")", "landscape_topk.csv"},
              std::min(*lo_f, *lo_t), std::max(*hi_f, *hi_t)));
      figure = how.empty() ? "![loss landscapes](landscape.png)"
                           : "gnuplot failed (" + how + "), see landscape.log";
    }
    lip << "\n"
        << figure << "\n\nTotal time " << std::fixed << std::setprecision(1)
        << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
        << " s.\n";
    std::printf("%s", lip.str().c_str());
    md << lip.str();
    runner::write_text_file(o.out + "/theory.md", md.str());
    std::printf("\nwrote %s/theory.md\n", o.out.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "theory: %s\n", e.what());
    return 1;
  }
  return 0;
}
