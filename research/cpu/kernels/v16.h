// 16 floats as one value (GCC/Clang vector extensions): one AVX-512 register, two AVX2 ones, four
// NEON ones. Shared by the XLA:CPU kernels in this folder: written with it, a loop over features
// is vector code whatever the auto-vectorizer decides (it can leave a loop scalar inside XLA's
// calls, many times slower than the same loop standalone).
#ifndef RESEARCH_KERNELS_V16_H_
#define RESEARCH_KERNELS_V16_H_

#include <cstring>

namespace research {

typedef float v16 __attribute__((vector_size(64)));
constexpr int kLanes = 16;

inline v16 Load(const float* p) {
  v16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void Store(float* p, v16 v) { std::memcpy(p, &v, sizeof(v)); }
// s - 0 is s for every float (s + 0 is not, for s = -0, so compilers cannot drop that add).
inline v16 Broadcast(float s) { return s - v16{}; }

// Makes v a register value here. Without it GCC folded loads of a vector that several FMAs share
// into each FMA (a memory operand: one load per FMA): the kernel gradient's loop, bound by the
// loads, ran at 2/3 of the speed it has with the vector loaded once.
// Only where v16 is one register (AVX-512): elsewhere no constraint names a register group, and
// the kernels that use Pin are not picked there (research/cpu/fused.py's tuned()).
#if defined(__AVX512F__)
inline void Pin(v16& v) { asm("" : "+v"(v)); }
#else
inline void Pin(v16&) {}
#endif

}  // namespace research

#endif  // RESEARCH_KERNELS_V16_H_
