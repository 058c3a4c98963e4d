// Measures this machine's memory copy bandwidth: the floor of CPU decode (weight bytes /
// bandwidth), as bench/cpu_decode.py reports it.
// SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  // Default 512 MiB per buffer: far beyond the caches.
  const size_t bytes = (argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 512) << 20;
  const int threads = argc > 2 ? std::atoi(argv[2]) : std::thread::hardware_concurrency();
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> workers;
    const size_t chunk = bytes / threads;
    for (int t = 0; t < threads; ++t)
      workers.emplace_back([&, t] {
        std::memcpy(dst.data() + t * chunk, src.data() + t * chunk, chunk);
      });
    for (auto& w : workers) w.join();
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    // A copy reads and writes every byte.
    best = std::max(best, 2.0 * bytes / seconds);
  }
  std::printf("%.3f\n", best / 1e9);  // GB/s (read + write)
  return dst[bytes / 2] == 1 ? 0 : 1;
}
