// SPDX-License-Identifier: MIT
// Every built-in policy evaluated inside a CUDA kernel from the very object used on the host
// (keep, row_statistic and the statistic's keep, classify), compared with the host evaluation.
// Exits 77 (CTest "skipped") where no GPU is present.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <semfocus/policy/absolute_threshold.hpp>
#include <semfocus/policy/banded.hpp>
#include <semfocus/policy/block_local.hpp>
#include <semfocus/policy/bottom_k.hpp>
#include <semfocus/policy/dense.hpp>
#include <semfocus/policy/explicit_mask.hpp>
#include <semfocus/policy/global_tokens.hpp>
#include <semfocus/policy/random_k.hpp>
#include <semfocus/policy/strided.hpp>
#include <semfocus/policy/threshold.hpp>
#include <semfocus/policy/top_k.hpp>

#include <cuda_runtime.h>

#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace sf = semfocus;

#define CHECK_CUDA(call)                                                              \
  do {                                                                                \
    const cudaError_t err_ = (call);                                                  \
    if (err_ != cudaSuccess)                                                          \
      throw std::runtime_error(std::string(#call) + ": " + cudaGetErrorString(err_)); \
  } while (0)

namespace {

// One thread per row: the kept mask of an n_q x n_k score matrix, and the tile class of each
// (row, 4-key) tile.
template <class P, class T>
__global__ void select_kernel(P p, sf::head_slice hs, const T* scores, unsigned char* kept,
                              int* tiles) {
  const sf::index_t i = sf::index_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= hs.n_q) return;
  const T* row = scores + i * hs.n_k;
  sf::row_statistic_t<P, T> st{};
  if constexpr (sf::row_policy<P, T>) st = p.row_statistic(hs, i, row);
  for (sf::index_t j = 0; j < hs.n_k; ++j)
    kept[i * hs.n_k + j] = sf::is_kept(p, hs, i, j, row[j], st);
  for (sf::index_t j0 = 0; j0 < hs.n_k; j0 += 4) {
    const sf::tile t{i, i + 1, j0, j0 + 4 < hs.n_k ? j0 + 4 : hs.n_k};
    tiles[i * hs.n_k + j0 / 4] = int(sf::classify_tile(p, hs, t));
  }
}

template <class T>
struct device_buffer {
  T* ptr = nullptr;
  explicit device_buffer(std::size_t n) { CHECK_CUDA(cudaMalloc(&ptr, n * sizeof(T) + 1)); }
  ~device_buffer() { cudaFree(ptr); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
};

// Scores drawn from a small set, so rows have many ties, plus a NaN and signed zeros.
template <class T>
std::vector<T> tied_scores(sf::index_t n_q, sf::index_t n_k, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> pick(-4, 4);
  std::vector<T> s(std::size_t(n_q * n_k));
  for (T& x : s) x = T(pick(gen)) / T(4);
  s[1] = -T(0);
  s[std::size_t(n_k + 2)] = T(NAN);
  return s;
}

template <class T, class P>
void check_policy(const P& p, sf::index_t n_q, sf::index_t n_k) {
  const sf::head_slice hs{1, 0, n_q, n_k};
  const std::vector<T> scores = tied_scores<T>(n_q, n_k, unsigned(n_q * 131 + n_k));
  const std::size_t cells = scores.size();
  device_buffer<T> d_scores(cells);
  device_buffer<unsigned char> d_kept(cells);
  device_buffer<int> d_tiles(cells);
  CHECK_CUDA(cudaMemcpy(d_scores.ptr, scores.data(), cells * sizeof(T), cudaMemcpyHostToDevice));
  select_kernel<<<unsigned((n_q + 63) / 64), 64>>>(p, hs, d_scores.ptr, d_kept.ptr, d_tiles.ptr);
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<unsigned char> kept(cells);
  std::vector<int> tiles(cells);
  CHECK_CUDA(cudaMemcpy(kept.data(), d_kept.ptr, cells, cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaMemcpy(tiles.data(), d_tiles.ptr, cells * sizeof(int), cudaMemcpyDeviceToHost));
  sf::index_t mismatches = 0, tile_mismatches = 0;
  for (sf::index_t i = 0; i < n_q; ++i) {
    const T* row = scores.data() + i * n_k;
    sf::row_statistic_t<P, T> st{};
    if constexpr (sf::row_policy<P, T>) st = p.row_statistic(hs, i, row);
    for (sf::index_t j = 0; j < n_k; ++j)
      mismatches += kept[std::size_t(i * n_k + j)] != sf::is_kept(p, hs, i, j, row[j], st);
    for (sf::index_t j0 = 0; j0 < n_k; j0 += 4) {
      const sf::tile t{i, i + 1, j0, j0 + 4 < n_k ? j0 + 4 : n_k};
      tile_mismatches += tiles[std::size_t(i * n_k + j0 / 4)] != int(sf::classify_tile(p, hs, t));
    }
  }
  CHECK(mismatches == 0);
  CHECK(tile_mismatches == 0);
}

template <class T>
void check_all(sf::index_t n_q, sf::index_t n_k) {
  CAPTURE(n_q);
  CAPTURE(n_k);
  check_policy<T>(sf::dense{}, n_q, n_k);
  check_policy<T>(sf::causal{}, n_q, n_k);
  check_policy<T>(sf::banded(n_k < 5 ? n_k : 5), n_q, n_k);
  check_policy<T>(sf::block_local(4), n_q, n_k);
  check_policy<T>(sf::strided(3, 1), n_q, n_k);
  check_policy<T>(sf::global_tokens(sf::banded(n_k < 4 ? 1 : 3), 1), n_q, n_k);
  check_policy<T>(sf::random_k(n_k < 3 ? 1 : 3, 99), n_q, n_k);
  check_policy<T>(sf::top_k(n_k < 5 ? n_k : 5), n_q, n_k);
  check_policy<T>(sf::bottom_k(n_k < 2 ? 1 : 2), n_q, n_k);
  check_policy<T>(sf::threshold(0.3), n_q, n_k);
  check_policy<T>(sf::absolute_threshold(0.25), n_q, n_k);
}

}  // namespace

TEST_CASE_TEMPLATE("device selection equals host selection for every built-in policy", T, float,
                   double) {
  check_all<T>(17, 17);
  check_all<T>(65, 33);
  check_all<T>(9, 130);
}

TEST_CASE("an explicit mask in device memory is read by the kernel") {
  const sf::index_t n = 12;
  std::vector<unsigned char> bits(std::size_t(n * n));
  for (std::size_t x = 0; x < bits.size(); ++x) bits[x] = (x * 5 + 1) % 3 == 0;
  device_buffer<unsigned char> d_bits(bits.size());
  CHECK_CUDA(cudaMemcpy(d_bits.ptr, bits.data(), bits.size(), cudaMemcpyHostToDevice));
  const sf::explicit_mask device_mask(
      sf::tensor_view<const unsigned char>(d_bits.ptr, {1, 1, n, n}));
  device_buffer<float> d_scores(std::size_t(n * n));
  device_buffer<unsigned char> d_kept(std::size_t(n * n));
  device_buffer<int> d_tiles(std::size_t(n * n));
  select_kernel<<<1, 64>>>(device_mask, sf::head_slice{0, 0, n, n}, d_scores.ptr, d_kept.ptr,
                           d_tiles.ptr);
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<unsigned char> kept(bits.size());
  CHECK_CUDA(cudaMemcpy(kept.data(), d_kept.ptr, kept.size(), cudaMemcpyDeviceToHost));
  CHECK(kept == bits);
}

int main(int argc, char** argv) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("semfocus_tests_cuda: no CUDA device, skipped\n");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}
