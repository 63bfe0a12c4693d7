"""Everything that exists for CPU speed: C++ kernels called from XLA:CPU (kernels/, built by
build.py, called by fused.py), formulations of the conv layer (convdot.py), and the CNN block
that uses them (blocks.py). Same parameters and math as flax's nn.Conv. The core reaches this
package through one seam, `research.models.conv_block`, which calls `conv_block` below."""
from absl import logging

from research import UserError

FORMULATIONS = ("xla", "im2col", "im2col_bf16", "hybrid", "fused")


def conv_block(conv_impl: str, platform: str, num_devices: int, parallelism: str):
  """The CNN block for `conv_impl` (one of FORMULATIONS, or 'auto') on `platform`.

  'auto' on CPU: `fused` where its kernels build and were tuned for the CPU (AVX-512), else
  `hybrid` (on an AVX2 CPU the MLP's step ran 5x slower on dense.cc than on XLA's dot);
  `hybrid` too under `jit` over several devices, where XLA's partitioner cannot split a kernel's
  call by batch and would run it whole on every device (pmap and single-device runs call it on
  each device's own batch). docs/performance.md has the measurements behind this choice.
  """
  from research.cpu import blocks, build, fused
  if conv_impl not in FORMULATIONS + ("auto",):
    raise UserError(f"unknown conv_impl {conv_impl!r}; choose 'auto', 'nn.Conv' or one of "
                    f"{FORMULATIONS}")
  if conv_impl == "fused":
    ok, why = build.available()
    if platform != "cpu" or not ok:
      raise UserError(f"conv_impl='fused' is an XLA:CPU kernel and cannot run here: "
                      f"{why if platform == 'cpu' else 'the backend is ' + platform}")
  if conv_impl == "auto":
    conv_impl = "fused"
    if num_devices > 1 and parallelism == "jit":
      conv_impl = "hybrid"
    else:
      ok, why = build.available()
      if not ok:
        logging.warning("conv_impl 'auto' uses 'hybrid': the fused kernels are unavailable (%s)",
                        why)
        conv_impl = "hybrid"
      elif not fused.tuned():
        logging.info("conv_impl 'auto' uses 'hybrid': the fused kernels are tuned for AVX-512 "
                     "CPUs and slower than XLA on this one")
        conv_impl = "hybrid"
  return blocks.CpuBlock(conv_impl)
