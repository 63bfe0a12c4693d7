// A stride-1 VALID convolution + bias and its two gradients, for XLA:CPU (research/cpu/build.py
// builds and registers it; conv_impl='fused' uses it for a layer on many input channels, the seed
// CNN's second, 13x13x32 -> 64).
//
// Layouts are the project's: x [N, H, W, C] (NHWC), kernel [K, K, C, F] (HWIO), bias [F],
// y [N, H-K+1, W-K+1, F]. Each product is a direct convolution whose innermost loop keeps a block
// of outputs in vector registers (v16.h: 16 floats, one AVX-512 register) and streams the operand
// they share from L1:
//   forward       y[r, q..q+R) x all F      += x[r+i, q+j+p, c] (broadcast) * kernel[i, j, c, :]
//   input grad    dx[h, w..w+R) x all C     += dy[h-i, q, f] (broadcast) * kernel[i, q+j-w.., :, f]
//                 (scattered: each dy value meets the K taps of a kernel row that land in the
//                 block, so no FMA multiplies a padding zero)
//   kernel grad   dkernel[i, 0..K, c..c+CB, :] += x[r+i, q+j, c] (broadcast) * dy[r, q, :]
// so every multiply-add of the three products is one FMA on a full vector, with no patches or
// transposes written to memory (the input gradient's transposed kernel is 4*K*K*C*F bytes, made
// once a call). Images are spread over XLA's intra-op threads (parallel_for.h).
//
// Sums run in a fixed order whatever the threads do: the kernel gradient keeps one partial sum
// per block of images and adds them in block order.
//
// The register blocks are what make it fast: rows split evenly into blocks (EvenBlocks), the K
// taps of a kernel row in one kernel-gradient block with its dy vectors held in registers
// (v16.h's Pin), and no FMA on the input gradient's padding zeros. The relu and pool stay outside
// (relu_pool.cc). scripts/profile_step.py times each product against Eigen's
// (docs/performance.md).
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
using research::Pin;
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

// A row of `width` outputs in the fewest blocks of at most R, their sizes differing by at most
// one (13 as 6 + 7, not 12 + 1): block(std::integral_constant<int, B>{}, start).
template <int R, typename Fn>
inline void SizedBlock(int64_t size, int64_t start, const Fn& block) {
  if constexpr (R >= 1) {
    if (size == R) return block(std::integral_constant<int, R>{}, start);
    SizedBlock<R - 1>(size, start, block);
  }
}

template <int R, typename Fn>
inline void EvenBlocks(int64_t width, const Fn& block) {
  const int64_t blocks = (width + R - 1) / R;
  for (int64_t b = 0, start = 0; b < blocks; ++b) {
    const int64_t size = (width - start) / (blocks - b);
    SizedBlock<R>(size, start, block);
    start += size;
  }
}

template <int K, int C, int F>
void ForwardImage(const Shape& d, const float* xb, const float* kernel, const float* bias,
                  float* yb) {
  for (int64_t r = 0; r < d.ho; ++r)
    EvenBlocks<ForwardWidth<F>()>(d.wo, [&](auto b, int64_t q) {
      ForwardBlock<K, C, F, decltype(b)::value>(d, xb, kernel, bias, r, q, yb);
    });
}

// dx[h, w0..w0+R) x all C from the dy rows that meet row h, scattered: each dy value, broadcast
// once, meets the K taps of a kernel row (dx[h, q+j] += dy[h-i, q, f] * kernel[i, j, :, f], with
// the kernel as [K, K, F, C] (kt)), so no FMA multiplies a padding zero. The block's dy columns
// are w0-K+1 .. w0+R-1 (P of them); a block at the row's start (First) or end (Last) skips the
// K-1 that fall outside dy. Those bounds are compile-time so that the loops unroll whole: with
// them at run time GCC dispatched on them inside the loop over f.
template <int K, int C, int F, int R, bool First, bool Last>
inline void InputGradBlock(const Shape& d, const float* dyb, const float* kt, int64_t h,
                           int64_t w0, float* dxb) {
  constexpr int V = C / kLanes, P = R + K - 1;
  constexpr int p0 = First ? K - 1 : 0, p1 = Last ? P - K : P - 1;
  v16 acc[R][V] = {};
  const int i0 = std::max<int64_t>(0, h - (d.ho - 1)), i1 = std::min<int64_t>(K - 1, h);
  for (int i = i0; i <= i1; ++i) {
    const float* dyrow = dyb + ((h - i) * d.wo + w0 - (K - 1)) * F;
    for (int f = 0; f < F; ++f) {
      v16 wt[K][V];
      for (int j = 0; j < K; ++j)
        for (int v = 0; v < V; ++v) wt[j][v] = Load(kt + ((i * K + j) * F + f) * C + v * kLanes);
      for (int p = p0; p <= p1; ++p) {
        const v16 g = Broadcast(dyrow[p * F + f]);
        for (int j = 0; j < K; ++j) {
          const int o = p - (K - 1) + j;  // the output this tap reaches
          if (o < 0 || o >= R) continue;
          for (int v = 0; v < V; ++v) acc[o][v] += g * wt[j][v];
        }
      }
    }
  }
  for (int o = 0; o < R; ++o)
    for (int v = 0; v < V; ++v) Store(dxb + (h * d.w + w0 + o) * C + v * kLanes, acc[o][v]);
}

// Outputs per input-gradient block: R * C / 16 accumulators, K * C / 16 kernel vectors and the
// broadcast in 32 registers.
template <int K, int C>
constexpr int InputGradWidth() { return std::min(16, (31 - K * C / kLanes) / (C / kLanes)); }

template <int K, int C, int F>
void InputGradImage(const Shape& d, const float* dyb, const float* kt, float* dxb) {
  // A row in blocks of at least R/2 (EvenBlocks): only its first and last blocks reach the
  // columns outside dy.
  static_assert(InputGradWidth<K, C>() / 2 >= K - 1, "blocks too narrow for the kernel");
  for (int64_t h = 0; h < d.h; ++h)
    EvenBlocks<InputGradWidth<K, C>()>(d.w, [&](auto b, int64_t w0) {
      constexpr int R = decltype(b)::value;
      const bool first = w0 == 0, last = w0 + R == d.w;
      if (first && last) InputGradBlock<K, C, F, R, true, true>(d, dyb, kt, h, w0, dxb);
      else if (first) InputGradBlock<K, C, F, R, true, false>(d, dyb, kt, h, w0, dxb);
      else if (last) InputGradBlock<K, C, F, R, false, true>(d, dyb, kt, h, w0, dxb);
      else InputGradBlock<K, C, F, R, false, false>(d, dyb, kt, h, w0, dxb);
    });
}

// dkernel[i, 0..K, c0..c0+CB, :] += sum over the image's outputs of x[r+i, q+j, c] * dy[r, q, :]:
// the K taps of a kernel row share each dy vector loaded.
template <int K, int C, int F, int CB>
inline void KernelGradBlock(const Shape& d, const float* xb, const float* dyb, int i, int c0,
                            float* dk) {
  constexpr int V = F / kLanes;
  v16 acc[K][CB][V];
  float* out = dk + (i * K * C + c0) * F;
  for (int j = 0; j < K; ++j)
    for (int c = 0; c < CB; ++c)
      for (int v = 0; v < V; ++v) acc[j][c][v] = Load(out + (j * C + c) * F + v * kLanes);
  for (int64_t r = 0; r < d.ho; ++r) {
    const float* xs = xb + (r + i) * d.w * C + c0;
    const float* gs = dyb + r * d.wo * F;
    for (int64_t q = 0; q < d.wo; ++q, xs += C, gs += F) {
      v16 g[V];
      for (int v = 0; v < V; ++v) g[v] = Load(gs + v * kLanes);
      for (int v = 0; v < V; ++v) Pin(g[v]);
      for (int j = 0; j < K; ++j)
        for (int c = 0; c < CB; ++c) {
          const v16 xv = Broadcast(xs[j * C + c]);
          for (int v = 0; v < V; ++v) acc[j][c][v] += xv * g[v];
        }
    }
  }
  for (int j = 0; j < K; ++j)
    for (int c = 0; c < CB; ++c)
      for (int v = 0; v < V; ++v) Store(out + (j * C + c) * F + v * kLanes, acc[j][c][v]);
}

// Channels per kernel-gradient block: K * CB * F / 16 accumulators, about 24 registers.
template <int K, int F>
constexpr int KernelGradChannels() { return std::max(1, 24 / (K * F / kLanes)); }

template <int K, int C, int F>
void KernelGradImage(const Shape& d, const float* xb, const float* dyb, float* dk) {
  constexpr int CB = KernelGradChannels<K, F>();
  static_assert(C % CB == 0, "C must be a multiple of the channel block");
  for (int i = 0; i < K; ++i)
    for (int c0 = 0; c0 < C; c0 += CB) KernelGradBlock<K, C, F, CB>(d, xb, dyb, i, c0, dk);
}

// The (K, C, F) compiled: 3x3 kernels from 16, 32 or 64 channels to 32 or 64 features (C and
// F multiples of 16). research/cpu/fused.py asks Conv2dCompiled before using a shape.
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
    ParallelFor(pool, d.n, [&](int64_t n) {
      InputGradImage<K, C, F>(d, dy + n * d.ho * d.wo * F, kt.data(), dx + n * d.h * d.w * C);
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
// registers and the blocks spill, which makes the products many times slower than Eigen's. The
// kernels still compute the right thing there (the tests run them), but research/cpu/fused.py
// uses them only where this says 1.
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
