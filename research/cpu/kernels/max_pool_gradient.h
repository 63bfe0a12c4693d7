// The gradient of relu then non-overlapping max pool over one window, shared by the XLA:CPU
// kernels in this folder that pool (research/cpu/build.py builds them).
#ifndef RESEARCH_KERNELS_MAX_POOL_GRADIENT_H_
#define RESEARCH_KERNELS_MAX_POOL_GRADIENT_H_

#include <cstdint>

#include "v16.h"

namespace research {

constexpr int64_t kMaxWindow = 16;  // the largest pool window, p * p (p <= 4)

// JAX's gradient of max(relu(z)) over a window of `pp` positions, F features each, times dy:
// g[a][o] = dy[o] / count[o] where z[a][o] is one of the window's count[o] maxima and that
// maximum is positive, else 0 (ties share dy, as jax's reduce_max does; relu's gradient at 0 is 0).
template <int F>
inline void WindowGradient(int64_t pp, const float (*z)[F], const float* dy, float (*g)[F]) {
  static_assert(F % kLanes == 0, "F must be a multiple of 16");
  const v16 zero = {}, one = zero + 1.0f;
  for (int o = 0; o < F; o += kLanes) {
    v16 m = Load(z[0] + o), count = zero;
    for (int64_t a = 1; a < pp; ++a) {
      const v16 za = Load(z[a] + o);
      m = m < za ? za : m;  // std::max
    }
    for (int64_t a = 0; a < pp; ++a) count += Load(z[a] + o) == m ? one : zero;
    const v16 share = m > zero ? Load(dy + o) / count : zero;
    for (int64_t a = 0; a < pp; ++a) Store(g[a] + o, Load(z[a] + o) == m ? share : zero);
  }
}

}  // namespace research

#endif  // RESEARCH_KERNELS_MAX_POOL_GRADIENT_H_
