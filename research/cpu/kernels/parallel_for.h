// ParallelFor, shared by the XLA:CPU kernels in this folder (research/cpu/build.py builds them).
#ifndef RESEARCH_KERNELS_PARALLEL_FOR_H_
#define RESEARCH_KERNELS_PARALLEL_FOR_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "xla/ffi/api/ffi.h"

namespace research {

// fn(i) for i in [0, n), on as many threads as XLA:CPU's intra-op pool has, the caller one of
// them. Every i runs exactly once; a helper that starts after all are taken only reads `state`,
// and if no helper starts the caller does all of them.
// Which thread runs which i never changes a result: the kernels give each i its own outputs or
// its own partial sum, added in index order after the loop.
template <typename Fn>
void ParallelFor(xla::ffi::ThreadPool& pool, int64_t n, const Fn& fn) {
  const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(pool.num_threads(), n));
  struct State {
    std::atomic<int64_t> next{0}, done{0};
  };
  auto state = std::make_shared<State>();
  auto work = [state, n, &fn]() {
    for (int64_t i; (i = state->next.fetch_add(1)) < n;) {
      fn(i);
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  for (int64_t t = 1; t < workers; ++t) pool.Schedule([work]() { work(); });
  work();
  while (state->done.load(std::memory_order_acquire) < n) std::this_thread::yield();
}

}  // namespace research

#endif  // RESEARCH_KERNELS_PARALLEL_FOR_H_
