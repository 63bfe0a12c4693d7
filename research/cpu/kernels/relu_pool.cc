// ReLU then non-overlapping max pool, and its gradient, for XLA:CPU (research/cpu/build.py builds
// and registers it; conv_impl='fused' runs it after a layer of conv2d.cc's kernels).
//
// y [N, H, W, F] -> out [N, H/p, W/p, F], the trailing rows and columns that do not fill a window
// dropped, as research.models.max_pool does; the gradient is JAX's for relu then max
// (max_pool_gradient.h), and NaN propagates through the forward as through XLA's max. Both are
// memory-bound passes over the map: XLA:CPU's fusions for the reshape-and-max pool ran them at a
// small fraction of the memory's speed (scripts/profile_step.py times both).
#include <algorithm>
#include <cstdint>

#include "max_pool_gradient.h"
#include "parallel_for.h"
#include "v16.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using research::kLanes;
using research::kMaxWindow;
using research::Load;
using research::ParallelFor;
using research::Store;
using research::v16;
using research::WindowGradient;

namespace {

struct Shape {
  int64_t n, h, w, f, p, hp, wp;
};

Shape MakeShape(ffi::Span<const int64_t> y, int64_t p) {
  Shape d;
  d.n = y[0], d.h = y[1], d.w = y[2], d.f = y[3], d.p = p;
  d.hp = p > 0 ? d.h / p : 0, d.wp = p > 0 ? d.w / p : 0;
  return d;
}

// max(a, b), NaN if either is.
inline v16 MaxNan(v16 a, v16 b) { return (a > b) | (a != a) ? a : b; }

template <int F>
void ForwardImage(const Shape& d, const float* yb, float* out) {
  static_assert(F % kLanes == 0, "F must be a multiple of 16");
  for (int64_t pr = 0; pr < d.hp; ++pr)
    for (int64_t pq = 0; pq < d.wp; ++pq)
      for (int o = 0; o < F; o += kLanes) {
        v16 m = Load(yb + (pr * d.p * d.w + pq * d.p) * F + o);
        for (int64_t a = 1; a < d.p * d.p; ++a)
          m = MaxNan(m, Load(yb + ((pr * d.p + a / d.p) * d.w + pq * d.p + a % d.p) * F + o));
        Store(out + (pr * d.wp + pq) * F + o, MaxNan(m, v16{}));
      }
}

template <int F>
void BackwardImage(const Shape& d, const float* yb, const float* dout, float* dyb) {
  float z[kMaxWindow][F], g[kMaxWindow][F];
  const int64_t pp = d.p * d.p;
  std::fill(dyb, dyb + d.h * d.w * F, 0.0f);  // the rows and columns no window covers
  for (int64_t pr = 0; pr < d.hp; ++pr)
    for (int64_t pq = 0; pq < d.wp; ++pq) {
      for (int64_t a = 0; a < pp; ++a) {
        const float* src = yb + ((pr * d.p + a / d.p) * d.w + pq * d.p + a % d.p) * F;
        std::copy(src, src + F, z[a]);
      }
      WindowGradient<F>(pp, z, dout + (pr * d.wp + pq) * F, g);
      for (int64_t a = 0; a < pp; ++a)
        std::copy(g[a], g[a] + F, dyb + ((pr * d.p + a / d.p) * d.w + pq * d.p + a % d.p) * F);
    }
}

#define FEATURES(X) X(16) X(32) X(64) X(128)

bool Compiled(int64_t features) {
#define CASE(F) if (features == F) return true;
  FEATURES(CASE)
#undef CASE
  return false;
}

ffi::Error CheckShape(const Shape& d) {
  if (d.p < 1 || d.p * d.p > kMaxWindow)
    return ffi::Error::InvalidArgument("relu_pool: pool window must be 1..4");
  if (!Compiled(d.f)) return ffi::Error::InvalidArgument("relu_pool: no kernel for this F");
  return ffi::Error::Success();
}

using Map = ffi::Buffer<ffi::F32, 4>;
using MapOut = ffi::ResultBuffer<ffi::F32, 4>;

ffi::Error Forward(ffi::ThreadPool pool, Map y, MapOut out, int64_t p) {
  const Shape d = MakeShape(y.dimensions(), p);
  if (ffi::Error e = CheckShape(d); e.failure()) return e;
  const float* yp = y.typed_data();
  float* op = out->typed_data();
#define CASE(F)                                                                        \
  if (d.f == F)                                                                        \
    ParallelFor(pool, d.n, [&](int64_t n) {                                            \
      ForwardImage<F>(d, yp + n * d.h * d.w * F, op + n * d.hp * d.wp * F);            \
    });
  FEATURES(CASE)
#undef CASE
  return ffi::Error::Success();
}

// dy (the gradient with respect to y) from y and the gradient with respect to out.
ffi::Error Backward(ffi::ThreadPool pool, Map y, Map dout, MapOut dy, int64_t p) {
  const Shape d = MakeShape(y.dimensions(), p);
  if (ffi::Error e = CheckShape(d); e.failure()) return e;
  const float* yp = y.typed_data();
  const float* gp = dout.typed_data();
  float* dp = dy->typed_data();
#define CASE(F)                                                                        \
  if (d.f == F)                                                                        \
    ParallelFor(pool, d.n, [&](int64_t n) {                                            \
      BackwardImage<F>(d, yp + n * d.h * d.w * F, gp + n * d.hp * d.wp * F,            \
                       dp + n * d.h * d.w * F);                                        \
    });
  FEATURES(CASE)
#undef CASE
  return ffi::Error::Success();
}

}  // namespace

extern "C" int ReluPoolCompiled(int64_t features) { return Compiled(features) ? 1 : 0; }

XLA_FFI_DEFINE_HANDLER_SYMBOL(ReluPoolForward, Forward,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<Map>().Ret<Map>()
                                  .Attr<int64_t>("p"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(ReluPoolBackward, Backward,
                              ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<Map>().Arg<Map>()
                                  .Ret<Map>().Attr<int64_t>("p"));
