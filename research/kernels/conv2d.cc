// A stride-1 VALID convolution + bias and its two gradients, for XLA:CPU (research/fused.py
// builds and registers it; conv_impl='fused' uses it for a layer on many input channels, the seed
// CNN's second, 13x13x32 -> 64).
//
// Layouts are the project's: x [N, H, W, C] (NHWC), kernel [K, K, C, F] (HWIO), bias [F],
// y [N, H-K+1, W-K+1, F]. Each product is a direct convolution whose innermost loop keeps a block
// of outputs in vector registers (GCC/Clang vector extensions: 16 floats, one AVX-512 register,
// two AVX2 ones, four NEON ones) and streams the operand they share from L1:
//   forward       y[r, q..q+R) x all F     += x[r+i, q+j+p, c] (broadcast) * kernel[i, j, c, :]
//   input grad    dx[h, w..w+R) x all C    += dy_padded[h+K-1-i, w+p+K-1-j, f] * kernel[i, j, :, f]
//   kernel grad   dkernel[i, j, c..c+4, :] += x[r+i, q+j, c] (broadcast) * dy[r, q, :]
// so every multiply-add of the three products is one FMA on a full vector, with no patches or
// transposes written to memory (the input gradient's transposed kernel is 4*K*K*C*F bytes, made
// once a call). Images are spread over XLA's intra-op threads (parallel_for.h).
//
// Sums run in a fixed order whatever the threads do: the kernel gradient keeps one partial sum
// per block of images and adds them in block order.
//
// Measured on a 2-core AMD EPYC (AVX-512), batch 128, the seed CNN's second layer alone, min of
// 30 (XLA's float32 2048^2 matmul: 378 GFLOP/s in the same run): forward 1.33 ms (431 GFLOP/s)
// against Eigen's 1.72, input gradient 1.67 ms against 2.54, kernel gradient 2.08 against 2.59.
// The register block matters: with rows of 11 done as one block of 6 and five of 1 the forward
// took 2.44 ms (RowBlocks now does 6 + 5); skipping the input gradient's zero rows took it from
// 2.06 to 1.67 ms. Tried and not kept: the relu and the pool fused in (the pre-activation map
// stored for the backward, dz made per image in cache): the layer's forward + both gradients
// 8.23 ms against 8.05 with XLA doing the relu and pool around these kernels (medians of 25,
// interleaved in one process). The relu and pool run as relu_pool.cc's two passes instead: a
// profile of the whole step later found XLA's fusions for them at ~2 ms of a ~10 ms step.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "parallel_for.h"
#include "v16.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using research::Broadcast;
using research::kLanes;
using research::Load;
using research::ParallelFor;
using research::Store;
using research::v16;

namespace {

struct Shape {
  int64_t n, h, w, c, k, f, ho, wo;
};

Shape MakeShape(ffi::Span<const int64_t> x, ffi::Span<const int64_t> kernel) {
  Shape d;
  d.n = x[0], d.h = x[1], d.w = x[2], d.c = x[3];
  d.k = kernel[0], d.f = kernel[3];
  d.ho = d.h - d.k + 1, d.wo = d.w - d.k + 1;
  return d;
}

// R outputs of one row, all F features: out[p][v] (p < R, v < F/16).
template <int K, int C, int F, int R>
inline void ForwardBlock(const Shape& d, const float* xb, const float* kernel, const float* bias,
                         int64_t r, int64_t q, float* yb) {
  constexpr int V = F / kLanes;
  v16 acc[R][V];
  for (int v = 0; v < V; ++v) {
    const v16 b = Load(bias + v * kLanes);
    for (int p = 0; p < R; ++p) acc[p][v] = b;
  }
  for (int i = 0; i < K; ++i)
    for (int j = 0; j < K; ++j) {
      const float* xs = xb + ((r + i) * d.w + q + j) * C;
      const float* wt = kernel + (i * K + j) * C * F;
      for (int c = 0; c < C; ++c) {
        v16 w[V];
        for (int v = 0; v < V; ++v) w[v] = Load(wt + c * F + v * kLanes);
        for (int p = 0; p < R; ++p) {
          const v16 xv = Broadcast(xs[p * C + c]);
          for (int v = 0; v < V; ++v) acc[p][v] += xv * w[v];
        }
      }
    }
  for (int p = 0; p < R; ++p)
    for (int v = 0; v < V; ++v) Store(yb + ((r * d.wo) + q + p) * F + v * kLanes, acc[p][v]);
}

// The register block widths: R outputs of F features in R * F / 16 vector registers.
template <int F>
constexpr int ForwardWidth() { return F >= 64 ? 6 : F >= 32 ? 12 : 14; }

// A row of `width` outputs in blocks of R, the rest as one block of width % R:
// block(std::integral_constant<int, B>{}, start) for each block of B outputs.
template <int R, typename Fn>
inline void RowBlocks(int64_t width, const Fn& block) {
  int64_t q = 0;
  for (; q + R <= width; q += R) block(std::integral_constant<int, R>{}, q);
  if constexpr (R > 1) {
    if (width - q == R - 1) return block(std::integral_constant<int, R - 1>{}, q);
    if (width - q > 0) return RowBlocks<R - 1>(width - q, [&](auto b, int64_t s) { block(b, q + s); });
  }
}

template <int K, int C, int F>
void ForwardImage(const Shape& d, const float* xb, const float* kernel, const float* bias,
                  float* yb) {
  for (int64_t r = 0; r < d.ho; ++r)
    RowBlocks<ForwardWidth<F>()>(d.wo, [&](auto b, int64_t q) {
      ForwardBlock<K, C, F, decltype(b)::value>(d, xb, kernel, bias, r, q, yb);
    });
}

// R inputs of one row, all C channels, from the zero-padded dy of one image
// (dyp [ho + 2(K-1), wo + 2(K-1), F]) and the kernel as [K, K, F, C] (kt).
template <int K, int C, int F, int R>
inline void InputGradBlock(const Shape& d, const float* dyp, const float* kt, int64_t h,
                           int64_t w, float* dxb) {
  constexpr int V = C / kLanes;
  const int64_t wp = d.wo + 2 * (K - 1);
  v16 acc[R][V] = {};
  // Only the kernel rows that meet a row of dy: the padding rows are zeros (the columns' are
  // not skipped: a block spans most of a row).
  const int i0 = std::max<int64_t>(0, h - (d.ho - 1)), i1 = std::min<int64_t>(K - 1, h);
  for (int i = i0; i <= i1; ++i)
    for (int j = 0; j < K; ++j) {
      const float* gs = dyp + ((h + K - 1 - i) * wp + w + K - 1 - j) * F;
      const float* wt = kt + (i * K + j) * F * C;
      for (int f = 0; f < F; ++f) {
        v16 wv[V];
        for (int v = 0; v < V; ++v) wv[v] = Load(wt + f * C + v * kLanes);
        for (int p = 0; p < R; ++p) {
          const v16 g = Broadcast(gs[p * F + f]);
          for (int v = 0; v < V; ++v) acc[p][v] += g * wv[v];
        }
      }
    }
  for (int p = 0; p < R; ++p)
    for (int v = 0; v < V; ++v) Store(dxb + (h * d.w + w + p) * C + v * kLanes, acc[p][v]);
}

template <int C>
constexpr int InputGradWidth() { return C >= 64 ? 6 : C >= 32 ? 13 : 14; }

template <int K, int C, int F>
void InputGradImage(const Shape& d, const float* dyb, const float* kt, float* dyp, float* dxb) {
  constexpr int R = InputGradWidth<C>();
  const int64_t hp = d.ho + 2 * (K - 1), wp = d.wo + 2 * (K - 1);
  std::fill(dyp, dyp + hp * wp * F, 0.0f);
  for (int64_t r = 0; r < d.ho; ++r)
    std::copy(dyb + r * d.wo * F, dyb + (r + 1) * d.wo * F, dyp + ((r + K - 1) * wp + K - 1) * F);
  for (int64_t h = 0; h < d.h; ++h)
    RowBlocks<R>(d.w, [&](auto b, int64_t w) {
      InputGradBlock<K, C, F, decltype(b)::value>(d, dyp, kt, h, w, dxb);
    });
}

// dkernel[i, j, c0..c0+CB, :] += sum over the image's outputs of x[r+i, q+j, c] * dy[r, q, :].
template <int K, int C, int F, int CB>
inline void KernelGradBlock(const Shape& d, const float* xb, const float* dyb, int i, int j,
                            int c0, float* dk) {
  constexpr int V = F / kLanes;
  v16 acc[CB][V];
  float* out = dk + ((i * K + j) * C + c0) * F;
  for (int c = 0; c < CB; ++c)
    for (int v = 0; v < V; ++v) acc[c][v] = Load(out + c * F + v * kLanes);
  for (int64_t r = 0; r < d.ho; ++r) {
    const float* xs = xb + ((r + i) * d.w + j) * C + c0;
    const float* gs = dyb + r * d.wo * F;
    for (int64_t q = 0; q < d.wo; ++q, xs += C, gs += F) {
      v16 g[V];
      for (int v = 0; v < V; ++v) g[v] = Load(gs + v * kLanes);
      for (int c = 0; c < CB; ++c) {
        const v16 xv = Broadcast(xs[c]);
        for (int v = 0; v < V; ++v) acc[c][v] += xv * g[v];
      }
    }
  }
  for (int c = 0; c < CB; ++c)
    for (int v = 0; v < V; ++v) Store(out + c * F + v * kLanes, acc[c][v]);
}

template <int F>
constexpr int KernelGradChannels() { return F >= 64 ? 4 : 8; }

template <int K, int C, int F>
void KernelGradImage(const Shape& d, const float* xb, const float* dyb, float* dk) {
  constexpr int CB = KernelGradChannels<F>();
  static_assert(C % CB == 0, "C must be a multiple of the channel block");
  for (int i = 0; i < K; ++i)
    for (int j = 0; j < K; ++j)
      for (int c0 = 0; c0 < C; c0 += CB) KernelGradBlock<K, C, F, CB>(d, xb, dyb, i, j, c0, dk);
}

// The (K, C, F) compiled: 3x3 kernels from 16, 32 or 64 channels to 32 or 64 features (C and
// F multiples of 16). research/fused.py asks Conv2dCompiled before using a shape.
#define SHAPES(X) \
  X(3, 16, 32) X(3, 16, 64) X(3, 32, 32) X(3, 32, 64) X(3, 64, 64)

bool Compiled(int64_t k, int64_t channels, int64_t features) {
#define CASE(K, C, F) if (k == K && channels == C && features == F) return true;
  SHAPES(CASE)
#undef CASE
  return false;
}

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

ffi::Error CheckShape(const Shape& d) {
  if (d.ho < 1 || d.wo < 1) return ffi::Error::InvalidArgument("conv2d: kernel larger than input");
  if (!Compiled(d.k, d.c, d.f))
    return ffi::Error::InvalidArgument("conv2d: no kernel compiled for this (k, C, F)");
  return ffi::Error::Success();
}

template <int K, int C, int F>
struct ForwardOp {
  static void Run(const Shape& d, ffi::ThreadPool& pool, const float* x, const float* kernel,
                  const float* bias, float* y) {
    ParallelFor(pool, d.n, [&](int64_t n) {
      ForwardImage<K, C, F>(d, x + n * d.h * d.w * C, kernel, bias, y + n * d.ho * d.wo * F);
    });
  }
};

template <int K, int C, int F>
struct InputGradOp {
  static void Run(const Shape& d, ffi::ThreadPool& pool, const float* kernel, const float* dy,
                  float* dx) {
    std::vector<float> kt(K * K * F * C);  // [K, K, F, C]
    for (int t = 0; t < K * K; ++t)
      for (int c = 0; c < C; ++c)
        for (int f = 0; f < F; ++f) kt[(t * F + f) * C + c] = kernel[(t * C + c) * F + f];
    const int64_t padded = (d.ho + 2 * (K - 1)) * (d.wo + 2 * (K - 1)) * F;
    // One padded-dy scratch per block of images (a block runs on one thread at a time).
    const int64_t blocks = std::min<int64_t>(d.n, 16);
    std::vector<float> scratch(blocks * padded);
    ParallelFor(pool, blocks, [&](int64_t b) {
      for (int64_t n = b * d.n / blocks; n < (b + 1) * d.n / blocks; ++n)
        InputGradImage<K, C, F>(d, dy + n * d.ho * d.wo * F, kt.data(),
                                scratch.data() + b * padded, dx + n * d.h * d.w * C);
    });
  }
};

template <int K, int C, int F>
struct KernelGradOp {
  static void Run(const Shape& d, ffi::ThreadPool& pool, const float* x, const float* dy,
                  float* dkernel) {
    constexpr int64_t size = K * K * C * F;
    const int64_t blocks = std::min<int64_t>(d.n, 16);
    std::vector<float> partial(blocks * size, 0.0f);
    ParallelFor(pool, blocks, [&](int64_t b) {
      for (int64_t n = b * d.n / blocks; n < (b + 1) * d.n / blocks; ++n)
        KernelGradImage<K, C, F>(d, x + n * d.h * d.w * C, dy + n * d.ho * d.wo * F,
                                 partial.data() + b * size);
    });
    std::copy(partial.begin(), partial.begin() + size, dkernel);
    for (int64_t b = 1; b < blocks; ++b) {
      const float* src = partial.data() + b * size;
      for (int64_t i = 0; i < size; ++i) dkernel[i] += src[i];
    }
  }
};

using Map = ffi::Buffer<ffi::F32, 4>;
using Vec = ffi::Buffer<ffi::F32, 1>;
using MapOut = ffi::ResultBuffer<ffi::F32, 4>;

ffi::Error Forward(ffi::ThreadPool pool, Map x, Map kernel, Vec bias, MapOut y) {
  const Shape d = MakeShape(x.dimensions(), kernel.dimensions());
  if (ffi::Error e = CheckShape(d); e.failure()) return e;
  Dispatch<ForwardOp>(d, pool, x.typed_data(), kernel.typed_data(), bias.typed_data(),
                      y->typed_data());
  return ffi::Error::Success();
}

// dx from dy alone (x is passed for its shape).
ffi::Error InputGrad(ffi::ThreadPool pool, Map x, Map kernel, Map dy, MapOut dx) {
  const Shape d = MakeShape(x.dimensions(), kernel.dimensions());
  if (ffi::Error e = CheckShape(d); e.failure()) return e;
  Dispatch<InputGradOp>(d, pool, kernel.typed_data(), dy.typed_data(), dx->typed_data());
  return ffi::Error::Success();
}

ffi::Error KernelGrad(ffi::ThreadPool pool, Map x, Map kernel, Map dy, MapOut dkernel) {
  const Shape d = MakeShape(x.dimensions(), kernel.dimensions());
  if (ffi::Error e = CheckShape(d); e.failure()) return e;
  Dispatch<KernelGradOp>(d, pool, x.typed_data(), dy.typed_data(), dkernel->typed_data());
  return ffi::Error::Success();
}

}  // namespace

extern "C" int Conv2dCompiled(int64_t k, int64_t channels, int64_t features) {
  return Compiled(k, channels, features) ? 1 : 0;
}

// Whether this build is one the register blocks were sized for: 16-float vectors in 32
// registers, i.e. AVX-512. Elsewhere each 16-float vector takes 2 (AVX2) or 4 (NEON, SSE)
// registers and the blocks spill: built with -march=haswell on the AMD EPYC of the numbers above,
// the three products took 64, 148 and 62 ms against Eigen's 2.0, 2.8 and 2.5. The kernels still
// compute the right thing there (the tests run them), but research/fused.py uses them only
// where this says 1.
extern "C" int Conv2dTuned() {
#if defined(__AVX512F__)
  return 1;
#else
  return 0;
#endif
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(Conv2dForward, Forward,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<Map>().Arg<Map>()
                                  .Arg<Vec>().Ret<Map>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(Conv2dInputGrad, InputGrad,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<Map>().Arg<Map>()
                                  .Arg<Map>().Ret<Map>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(Conv2dKernelGrad, KernelGrad,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<Map>().Arg<Map>()
                                  .Arg<Map>().Ret<Map>());
