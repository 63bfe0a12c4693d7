// Convolution + bias + ReLU + non-overlapping max pool, fused, and its gradients, for XLA:CPU
// (research/cpu/build.py builds and registers it; conv_impl='fused').
//
// Layouts are the project's: x [N, H, W, C] (NHWC), kernel [k, k, C, F] (HWIO), bias [F],
// output [N, Ho/p, Wo/p, F] with Ho = (H - k)/s + 1 (VALID; SAME is padded before the call) and
// the trailing rows and columns that do not fill a pool window dropped, as research.models.max_pool
// does. The gradient is JAX's for relu then max: a window whose maximum is not positive gets none;
// otherwise dy is shared equally among the window's maxima. Nothing is saved between forward
// and backward: the backward recomputes the window's pre-activations (k*k*C multiply-adds each),
// which costs less than writing and reading back the [N, Ho, Wo, F] map the unfused layer makes.
//
// Every call is compiled for each (k, C, F) in SHAPES below, so that a position's F sums and its
// T x F kernel-gradient terms (T = k*k*C) stay in vector registers. The input gradient, needed
// only where the layer is not the first, is a call of its own that XLA drops for the data layer.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "max_pool_gradient.h"
#include "parallel_for.h"
#include "v16.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using research::Broadcast;
using research::kLanes;
using research::kMaxWindow;
using research::Load;
using research::ParallelFor;
using research::Store;
using research::v16;
using research::WindowGradient;

namespace {

struct Shape {
  int64_t n, h, w, c, k, f, s, p, hp, wp;
};

Shape MakeShape(ffi::Span<const int64_t> x, ffi::Span<const int64_t> kernel, int64_t s, int64_t p) {
  Shape d;
  d.n = x[0], d.h = x[1], d.w = x[2], d.c = x[3];
  d.k = kernel[0], d.f = kernel[3], d.s = s, d.p = p;
  d.hp = ((d.h - d.k) / s + 1) / p;
  d.wp = ((d.w - d.k) / s + 1) / p;
  return d;
}

// The K*K*C input values under the kernel at output position (r, q) of one image, in HWIO tap
// order.
template <int K, int C>
inline void Taps(const Shape& d, const float* xb, int64_t r, int64_t q, float* v) {
  for (int i = 0; i < K; ++i) {
    const float* row = xb + ((r * d.s + i) * d.w + q * d.s) * C;
    for (int u = 0; u < K * C; ++u) v[i * K * C + u] = row[u];
  }
}

template <int T, int F>
inline void Preactivation(const float* v, const float* kernel, const float* bias, float* z) {
  constexpr int V = F / kLanes;
  v16 acc[V] = {};
  for (int t = 0; t < T; ++t) {
    const v16 vt = Broadcast(v[t]);
    for (int o = 0; o < V; ++o) acc[o] += vt * Load(kernel + t * F + o * kLanes);
  }
  for (int o = 0; o < V; ++o) Store(z + o * kLanes, acc[o] + Load(bias + o * kLanes));
}

template <int K, int C, int F>
void ForwardImage(const Shape& d, const float* xb, const float* kernel, const float* bias,
                  float* out) {
  constexpr int T = K * K * C;
  float v[T], z[F];
  for (int64_t pr = 0; pr < d.hp; ++pr)
    for (int64_t pq = 0; pq < d.wp; ++pq) {
      float m[F] = {};  // relu(max(z)) == max(0, z...)
      for (int64_t a = 0; a < d.p * d.p; ++a) {
        Taps<K, C>(d, xb, pr * d.p + a / d.p, pq * d.p + a % d.p, v);
        Preactivation<T, F>(v, kernel, bias, z);
        for (int o = 0; o < F; ++o) m[o] = std::max(m[o], z[o]);
      }
      std::copy(m, m + F, out + (pr * d.wp + pq) * F);
    }
}

template <int K, int C, int F, int P>
void KernelGradImage(const Shape& d, const float* xb, const float* kernel, const float* bias,
                     const float* dy, float* dkernel, float* dbias) {
  constexpr int T = K * K * C;
  const int64_t p = P > 0 ? P : d.p, pp = p * p;  // the pool window, compile-time if P > 0
  constexpr int V = F / kLanes;
  float v[kMaxWindow][T], z[kMaxWindow][F], g[kMaxWindow][F];
  // Local sums as vectors (T * V + V of them, 20 for the seed CNN's first layer): registers where
  // they fit. As float arrays GCC kept them on the stack, a load and a store per FMA.
  v16 dk[T][V] = {}, db[V] = {};
  for (int64_t pr = 0; pr < d.hp; ++pr)
    for (int64_t pq = 0; pq < d.wp; ++pq) {
      for (int64_t a = 0; a < pp; ++a) {
        Taps<K, C>(d, xb, pr * p + a / p, pq * p + a % p, v[a]);
        Preactivation<T, F>(v[a], kernel, bias, z[a]);
      }
      WindowGradient<F>(pp, z, dy + (pr * d.wp + pq) * F, g);
      for (int64_t a = 0; a < pp; ++a) {
        v16 ga[V];
        for (int o = 0; o < V; ++o) ga[o] = Load(g[a] + o * kLanes);
        for (int t = 0; t < T; ++t) {
          const v16 vt = Broadcast(v[a][t]);
          for (int o = 0; o < V; ++o) dk[t][o] += vt * ga[o];
        }
        for (int o = 0; o < V; ++o) db[o] += ga[o];
      }
    }
  for (int t = 0; t < T; ++t)
    for (int o = 0; o < V; ++o)
      Store(dkernel + t * F + o * kLanes, Load(dkernel + t * F + o * kLanes) + dk[t][o]);
  for (int o = 0; o < V; ++o) Store(dbias + o * kLanes, Load(dbias + o * kLanes) + db[o]);
}

// dx of one image: the window gradients recomputed, then dx[taps of (r, q)] += kernel @ g.
template <int K, int C, int F>
void InputGradImage(const Shape& d, const float* xb, const float* kernel, const float* bias,
                    const float* dy, float* dxb) {
  constexpr int T = K * K * C;
  const int64_t pp = d.p * d.p;
  float v[T], z[kMaxWindow][F], g[kMaxWindow][F];
  std::fill(dxb, dxb + d.h * d.w * d.c, 0.0f);
  for (int64_t pr = 0; pr < d.hp; ++pr)
    for (int64_t pq = 0; pq < d.wp; ++pq) {
      for (int64_t a = 0; a < pp; ++a) {
        Taps<K, C>(d, xb, pr * d.p + a / d.p, pq * d.p + a % d.p, v);
        Preactivation<T, F>(v, kernel, bias, z[a]);
      }
      WindowGradient<F>(pp, z, dy + (pr * d.wp + pq) * F, g);
      for (int64_t a = 0; a < pp; ++a) {
        const int64_t r = pr * d.p + a / d.p, q = pq * d.p + a % d.p;
        const float* wt = kernel;
        for (int64_t i = 0; i < d.k; ++i) {
          float* row = dxb + ((r * d.s + i) * d.w + q * d.s) * d.c;
          for (int64_t u = 0; u < d.k * d.c; ++u, wt += F) {
            float acc = 0.0f;
            for (int o = 0; o < F; ++o) acc += wt[o] * g[a][o];
            row[u] += acc;
          }
        }
      }
    }
}

// The (K, C, F) compiled: 3x3 kernels on 1 and 3 channels and 5x5 on one, to 16, 32 or 64
// features. research/cpu/fused.py asks ConvReluPoolCompiled before using a shape.
#define SHAPES(X) \
  X(3, 1, 16) X(3, 1, 32) X(3, 1, 64) X(5, 1, 16) X(5, 1, 32) X(5, 1, 64) X(3, 3, 16) \
  X(3, 3, 32) X(3, 3, 64)

template <template <int, int, int> class Op, typename... Args>
bool Dispatch(const Shape& d, Args&&... args) {
#define CASE(K, C, F)                                  \
  if (d.k == K && d.c == C && d.f == F) {              \
    Op<K, C, F>::Run(d, std::forward<Args>(args)...);  \
    return true;                                       \
  }
  SHAPES(CASE)
#undef CASE
  return false;
}

bool Compiled(int64_t k, int64_t channels, int64_t features) {
#define CASE(K, C, F) if (k == K && channels == C && features == F) return true;
  SHAPES(CASE)
#undef CASE
  return false;
}

ffi::Error CheckShape(const Shape& d) {
  if (d.p < 1 || d.p * d.p > kMaxWindow || d.s < 1)
    return ffi::Error::InvalidArgument("conv_relu_pool: pool window must be 1..4, stride >= 1");
  if (!Compiled(d.k, d.c, d.f))
    return ffi::Error::InvalidArgument("conv_relu_pool: no kernel compiled for this (k, C, F)");
  return ffi::Error::Success();
}

template <int K, int C, int F>
struct ForwardOp {
  static constexpr int T = K * K * C;
  static void Run(const Shape& d, ffi::ThreadPool& pool, const float* x, const float* kernel,
                  const float* bias, float* y) {
    ParallelFor(pool, d.n, [&](int64_t n) {
      ForwardImage<K, C, F>(d, x + n * d.h * d.w * d.c, kernel, bias,
                            y + n * d.hp * d.wp * F);
    });
  }
};

template <int K, int C, int F>
struct KernelGradOp {
  static constexpr int T = K * K * C;
  static void Run(const Shape& d, ffi::ThreadPool& pool, const float* x, const float* kernel,
                  const float* bias, const float* dy, float* dkernel, float* dbias) {
    // One partial sum per block of images, added in block order: the result does not depend on
    // which thread ran which block.
    const int64_t blocks = std::min<int64_t>(d.n, 16), size = (T + 1) * F;
    std::vector<float> partial(blocks * size, 0.0f);
    ParallelFor(pool, blocks, [&](int64_t b) {
      float* dk = partial.data() + b * size;
      for (int64_t n = b * d.n / blocks; n < (b + 1) * d.n / blocks; ++n) {
        const float* xn = x + n * d.h * d.w * d.c;
        const float* dyn = dy + n * d.hp * d.wp * F;
        // the seed CNN's pool with its window loops unrolled (faster than the general loops)
        if (d.p == 2)
          KernelGradImage<K, C, F, 2>(d, xn, kernel, bias, dyn, dk, dk + T * F);
        else
          KernelGradImage<K, C, F, 0>(d, xn, kernel, bias, dyn, dk, dk + T * F);
      }
    });
    std::fill(dkernel, dkernel + T * F, 0.0f);
    std::fill(dbias, dbias + F, 0.0f);
    for (int64_t b = 0; b < blocks; ++b) {
      const float* src = partial.data() + b * size;
      for (int i = 0; i < T * F; ++i) dkernel[i] += src[i];
      for (int o = 0; o < F; ++o) dbias[o] += src[T * F + o];
    }
  }
};

template <int K, int C, int F>
struct InputGradOp {
  static constexpr int T = K * K * C;
  static void Run(const Shape& d, ffi::ThreadPool& pool, const float* x, const float* kernel,
                  const float* bias, const float* dy, float* dx) {
    ParallelFor(pool, d.n, [&](int64_t n) {
      InputGradImage<K, C, F>(d, x + n * d.h * d.w * d.c, kernel, bias,
                              dy + n * d.hp * d.wp * F, dx + n * d.h * d.w * d.c);
    });
  }
};

using Map = ffi::Buffer<ffi::F32, 4>;  // rank-4 float32: images, kernels, gradients
using Vec = ffi::Buffer<ffi::F32, 1>;
using MapOut = ffi::ResultBuffer<ffi::F32, 4>;
using VecOut = ffi::ResultBuffer<ffi::F32, 1>;

ffi::Error Forward(ffi::ThreadPool pool, Map x, Map kernel, Vec bias, MapOut y, int64_t s,
                   int64_t p) {
  const Shape d = MakeShape(x.dimensions(), kernel.dimensions(), s, p);
  if (ffi::Error e = CheckShape(d); e.failure()) return e;
  Dispatch<ForwardOp>(d, pool, x.typed_data(), kernel.typed_data(), bias.typed_data(),
                      y->typed_data());
  return ffi::Error::Success();
}

ffi::Error KernelGrad(ffi::ThreadPool pool, Map x, Map kernel, Vec bias, Map dy,
                      MapOut dkernel, VecOut dbias, int64_t s, int64_t p) {
  const Shape d = MakeShape(x.dimensions(), kernel.dimensions(), s, p);
  if (ffi::Error e = CheckShape(d); e.failure()) return e;
  Dispatch<KernelGradOp>(d, pool, x.typed_data(), kernel.typed_data(), bias.typed_data(),
                         dy.typed_data(), dkernel->typed_data(), dbias->typed_data());
  return ffi::Error::Success();
}

ffi::Error InputGrad(ffi::ThreadPool pool, Map x, Map kernel, Vec bias, Map dy, MapOut dx,
                     int64_t s, int64_t p) {
  const Shape d = MakeShape(x.dimensions(), kernel.dimensions(), s, p);
  if (ffi::Error e = CheckShape(d); e.failure()) return e;
  Dispatch<InputGradOp>(d, pool, x.typed_data(), kernel.typed_data(), bias.typed_data(),
                        dy.typed_data(), dx->typed_data());
  return ffi::Error::Success();
}

}  // namespace

extern "C" int ConvReluPoolCompiled(int64_t k, int64_t channels, int64_t features) {
  return Compiled(k, channels, features) ? 1 : 0;
}

// Every call takes (x, kernel, bias, ...) and the attributes s (stride) and p (pool window).
auto Inputs() { return ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<Map>().Arg<Map>().Arg<Vec>(); }

XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvReluPoolForward, Forward,
                              Inputs().Ret<Map>().Attr<int64_t>("s").Attr<int64_t>("p"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvReluPoolKernelGrad, KernelGrad,
                              Inputs().Arg<Map>().Ret<Map>().Ret<Vec>().Attr<int64_t>("s")
                                  .Attr<int64_t>("p"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(ConvReluPoolInputGrad, InputGrad,
                              Inputs().Arg<Map>().Ret<Map>().Attr<int64_t>("s").Attr<int64_t>("p"));
