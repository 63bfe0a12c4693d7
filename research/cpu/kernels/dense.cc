// A dense layer, y = x @ kernel + bias, and its gradients, for XLA:CPU (research/cpu/build.py builds
// and registers it; conv_impl='fused' runs the CNN's dense layers and classifier with it).
//
// Layouts are flax's nn.Dense's: x [B, K], kernel [K, N], bias [N], y [B, N], any sizes. Every sum
// runs in an order fixed by the shapes alone, whatever the number of threads: each output is one
// task's, summed in index order,
//   forward       y[b, n]       = (sum over k = 0, 1, ... of x[b, k] * kernel[k, n]) + bias[n]
//   input grad    dx[b, k]      = sum over n = 0, 1, ... of dy[b, n] * kernel[k, n]
//   kernel grad   dkernel[k, n] = sum over b = 0, 1, ... of x[b, k] * dy[b, n]; dbias[n] of dy[b, n]
// and threads only decide which task runs where. XLA's own dot (Eigen's contraction) splits a long
// contraction by the size of the thread pool: the seed CNN's classifier, [128, 1600] x [1600, 10],
// gives other bits with 1 thread than with 2 (tests/test_threads.py).
//
// Each loop keeps independent sums in registers (v16.h: 16 floats a vector): 8 rows of outputs in
// the forward and the input gradient, 8 kernel rows in the kernel gradient. N (for the input
// gradient K) is padded to 16 lanes in a copy of the kernel (or dy) made once a call; its padding
// lanes are computed and not stored.
#include <algorithm>
#include <cstdint>
#include <cstring>
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

constexpr int64_t kRows = 8;    // output rows a forward / input-gradient block computes at once
constexpr int64_t kTaps = 8;    // kernel rows a kernel-gradient task computes at once

int64_t Padded(int64_t n) { return (n + kLanes - 1) / kLanes * kLanes; }

// a [rows, cols] -> [rows, Padded(cols)], the new columns zero.
std::vector<float> PadColumns(const float* a, int64_t rows, int64_t cols) {
  const int64_t cp = Padded(cols);
  std::vector<float> out(rows * cp, 0.0f);
  for (int64_t r = 0; r < rows; ++r) std::copy(a + r * cols, a + (r + 1) * cols, out.data() + r * cp);
  return out;
}

// a [rows, cols] -> its transpose [cols, Padded(rows)], the new columns zero.
std::vector<float> TransposePadded(const float* a, int64_t rows, int64_t cols) {
  const int64_t rp = Padded(rows);
  std::vector<float> out(cols * rp, 0.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[c * rp + r] = a[r * cols + c];
  return out;
}

// The first `count` lanes of v to p.
inline void StorePartial(float* p, v16 v, int64_t count) {
  if (count >= kLanes) return Store(p, v);
  float lanes[kLanes];
  Store(lanes, v);
  std::memcpy(p, lanes, count * sizeof(float));
}

// out[r, j0..j0+16) for the kRows rows from r0 (fewer at the end: the missing rows repeat the last
// one and are not stored) of  sum over t < T of a[r, t] * w[t, j0..j0+16)  (t ascending), plus
// `add` if given. a [rows, T] row-major; w [T, wstride].
inline void RowBlock(const float* a, int64_t rows, int64_t T, const float* w, int64_t wstride,
                     const float* add, int64_t r0, int64_t j0, int64_t width, float* out,
                     int64_t ostride) {
  const float* src[kRows];
  for (int64_t r = 0; r < kRows; ++r) src[r] = a + std::min(r0 + r, rows - 1) * T;
  v16 acc[kRows] = {};
  for (int64_t t = 0; t < T; ++t) {
    const v16 wt = Load(w + t * wstride + j0);
    for (int64_t r = 0; r < kRows; ++r) acc[r] += Broadcast(src[r][t]) * wt;
  }
  const v16 b = add ? Load(add + j0) : v16{};
  for (int64_t r = 0; r < kRows && r0 + r < rows; ++r)
    StorePartial(out + (r0 + r) * ostride + j0, add ? acc[r] + b : acc[r], width - j0);
}

using Mat = ffi::Buffer<ffi::F32, 2>;
using Vec = ffi::Buffer<ffi::F32, 1>;
using MatOut = ffi::ResultBuffer<ffi::F32, 2>;
using VecOut = ffi::ResultBuffer<ffi::F32, 1>;

ffi::Error CheckShapes(int64_t k_x, int64_t k_kernel) {
  if (k_x != k_kernel) return ffi::Error::InvalidArgument("dense: x and kernel disagree on K");
  return ffi::Error::Success();
}

// y = x @ kernel + bias.
ffi::Error Forward(ffi::ThreadPool pool, Mat x, Mat kernel, Vec bias, MatOut y) {
  const int64_t b = x.dimensions()[0], k = x.dimensions()[1], n = kernel.dimensions()[1];
  if (ffi::Error e = CheckShapes(k, kernel.dimensions()[0]); e.failure()) return e;
  if (b == 0 || n == 0) return ffi::Error::Success();
  const std::vector<float> wp = PadColumns(kernel.typed_data(), k, n);  // [K, Np]
  const std::vector<float> bp = PadColumns(bias.typed_data(), 1, n);    // [Np]
  const int64_t np = Padded(n), row_blocks = (b + kRows - 1) / kRows;
  const float* xp = x.typed_data();
  float* yp = y->typed_data();
  ParallelFor(pool, row_blocks, [&](int64_t block) {
    for (int64_t j0 = 0; j0 < np; j0 += kLanes)
      RowBlock(xp, b, k, wp.data(), np, bp.data(), block * kRows, j0, n, yp, n);
  });
  return ffi::Error::Success();
}

// dx = dy @ kernel^T (x is passed for its shape).
ffi::Error InputGrad(ffi::ThreadPool pool, Mat x, Mat kernel, Mat dy, MatOut dx) {
  const int64_t b = x.dimensions()[0], k = x.dimensions()[1], n = kernel.dimensions()[1];
  if (ffi::Error e = CheckShapes(k, kernel.dimensions()[0]); e.failure()) return e;
  if (b == 0 || k == 0) return ffi::Error::Success();
  const std::vector<float> wt = TransposePadded(kernel.typed_data(), k, n);  // [N, Kp]
  const int64_t kp = Padded(k), row_blocks = (b + kRows - 1) / kRows;
  const float* g = dy.typed_data();
  float* out = dx->typed_data();
  ParallelFor(pool, row_blocks, [&](int64_t block) {
    for (int64_t j0 = 0; j0 < kp; j0 += kLanes)
      RowBlock(g, b, n, wt.data(), kp, nullptr, block * kRows, j0, k, out, k);
  });
  return ffi::Error::Success();
}

// dkernel = x^T @ dy and dbias = the sum of dy's rows, every output summed over the rows in row
// order by one task.
ffi::Error ParamGrad(ffi::ThreadPool pool, Mat x, Mat dy, MatOut dkernel, VecOut dbias) {
  const int64_t b = x.dimensions()[0], k = x.dimensions()[1], n = dy.dimensions()[1];
  if (dy.dimensions()[0] != b) return ffi::Error::InvalidArgument("dense: x and dy disagree on B");
  if (n == 0) return ffi::Error::Success();
  const int64_t np = Padded(n), groups = (k + kTaps - 1) / kTaps;
  const std::vector<float> g = PadColumns(dy.typed_data(), b, n);  // [B, Np]
  const float* xp = x.typed_data();
  float* dk = dkernel->typed_data();
  float* db = dbias->typed_data();
  // Task t < groups: kernel rows [t * kTaps, ...) of every column; task `groups`: the bias.
  ParallelFor(pool, groups + 1, [&](int64_t t) {
    for (int64_t j0 = 0; j0 < np; j0 += kLanes) {
      if (t == groups) {
        v16 acc = {};
        for (int64_t r = 0; r < b; ++r) acc += Load(g.data() + r * np + j0);
        StorePartial(db + j0, acc, n - j0);
        continue;
      }
      const int64_t k0 = t * kTaps, taps = std::min(kTaps, k - k0);
      v16 acc[kTaps] = {};
      for (int64_t r = 0; r < b; ++r) {
        const v16 gr = Load(g.data() + r * np + j0);
        const float* xr = xp + r * k + k0;
        if (taps == kTaps) {
          for (int64_t i = 0; i < kTaps; ++i) acc[i] += Broadcast(xr[i]) * gr;
        } else {
          for (int64_t i = 0; i < taps; ++i) acc[i] += Broadcast(xr[i]) * gr;
        }
      }
      for (int64_t i = 0; i < taps; ++i) StorePartial(dk + (k0 + i) * n + j0, acc[i], n - j0);
    }
  });
  return ffi::Error::Success();
}

// The number of threads of the intra-op pool XLA:CPU hands its kernels (and Eigen's dots), in
// every value of out: tests/test_threads.py checks that PJRT_NPROC sets it.
using Ints = ffi::Buffer<ffi::S32, 1>;

ffi::Error PoolSize(ffi::ThreadPool pool, ffi::Result<Ints> out) {
  std::fill(out->typed_data(), out->typed_data() + out->element_count(), pool.num_threads());
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(ThreadPoolSize, PoolSize,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Ret<Ints>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DenseForward, Forward,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<Mat>().Arg<Mat>()
                                  .Arg<Vec>().Ret<Mat>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DenseInputGrad, InputGrad,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<Mat>().Arg<Mat>()
                                  .Arg<Mat>().Ret<Mat>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(DenseParamGrad, ParamGrad,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<Mat>().Arg<Mat>()
                                  .Ret<Mat>().Ret<Vec>());
