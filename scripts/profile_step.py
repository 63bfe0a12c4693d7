"""Where the seed CNN's train step spends its time on this backend (a profile, not a test).

  python scripts/profile_step.py [--batch_size=128] [--steps=10] [--conv_impls=xla,hybrid,fused]

Times, per train step of batch 128 (median of 5 repeats after a warm-up):
forward only, forward+backward with each max-pool implementation, one jitted step per call with
XLA:CPU's default convolution kernels (YNNPACK) and with Eigen's (what research/parallel.py
picks), 10 steps per call as a rolled loop (lax.scan, what XLA keeps as a while loop) and 10 steps
unrolled (what research/steps.py compiles). Then, per `--conv_impls` formulation, the first conv
block alone (conv 28x28x1 -> 32, relu, pool: forward, and forward + kernel gradient) and the
10-step unrolled chunk, the formulations' repeats interleaved so that a change in the machine's
speed hits them alike (median of 9); and the second convolution's three products (forward,
input and kernel gradients) as Eigen and as `fused`'s kernels run them, and its relu + max pool
(forward, forward + backward) as XLA and as `fused`'s kernel run them, interleaved (median of
15). Random uint8 images: timing does not depend on them.
"""
import functools
import os
import time


import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from absl import app, flags  # noqa: E402

from configs import mnist_cnn  # noqa: E402
from research.cpu import fused
from research import experiment, models, parallel, steps  # noqa: E402


FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 128, "Examples per train step.")
flags.DEFINE_integer("steps", 10, "Train steps per call in the multi-step rows.")
flags.DEFINE_list("conv_impls", ["xla", "hybrid", "fused"], "config.conv_impl values compared "
                  "(configs/common.CONV_IMPLS); empty: none.")


def _time(fn, repeats=5):
  jax.block_until_ready(fn())  # compile + warm up
  samples = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    samples.append(time.perf_counter() - t0)
  return sorted(samples)[len(samples) // 2]


def _interleaved(fns, repeats=9):
  """{name: median seconds} of fns called in turn, `repeats` rounds after a warm-up each."""
  samples = {name: [] for name in fns}
  for fn in fns.values():
    jax.block_until_ready(fn())
  for _ in range(repeats):
    for name, fn in fns.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn())
      samples[name].append(time.perf_counter() - t0)
  return {name: sorted(v)[len(v) // 2] for name, v in samples.items()}


def _formulations(images, labels, idx, k, opts):
  """Rows for each --conv_impls formulation: the first conv block alone, and the chunk."""
  b = images.shape[0] // k
  x = steps.normalize(images[:b])
  block, chunk = {}, {}
  for impl in FLAGS.conv_impls:
    c = mnist_cnn.get_config()
    c.conv_impl = impl
    model = models.create_model(c, 10)
    state = jax.device_put(experiment.create_train_state(c, model, (28, 28, 1), 1000))
    # The seed CNN's first block (its Conv_0 params) as a CNN of one block, whose Dense(10) head
    # (14 MFLOP each way at batch 128; the block's convolution: 50) gives the block a gradient.
    one = models.CNN(features=tuple(c.cnn_features[:1]), kernel_size=c.cnn_kernel,
                     pool=c.cnn_pool, block=model.block)
    head = one.init(jax.random.PRNGKey(0), x)["params"]["Dense_0"]
    out = lambda conv, one=one, head=head: one.apply(
        {"params": {"Conv_0": conv, "Dense_0": head}}, x).sum()
    conv0 = state.params["Conv_0"]
    block[f"{impl} forward"] = functools.partial(jax.jit(out, compiler_options=opts), conv0)
    block[f"{impl} forward + kernel gradient"] = functools.partial(
        jax.jit(jax.grad(out), compiler_options=opts), conv0)
    run = jax.jit(steps.make_train_chunk(steps.make_train_step(), k), compiler_options=opts)
    chunk[impl] = functools.partial(run, state, images, labels, idx, k)
  rows = [(f"first conv block (28x28x1 -> 32, relu, pool) + head, {name}", sec)
          for name, sec in _interleaved(block).items()]
  rows += _second_layer(b, opts)
  rows += [(f"train step, {k} per call, unrolled, conv_impl={impl}", sec / k)
           for impl, sec in _interleaved(chunk).items()]
  return rows


def _second_layer(b, opts):
  """The seed CNN's second convolution (13x13x32 -> 64) alone: its forward and its two
  gradients as Eigen runs them (lax, what `xla` and `hybrid` use) and as conv2d.cc's kernels
  (what `fused` uses), interleaved; with the GFLOP/s of the layer's own multiply-adds. Then its
  relu and pool as XLA and as relu_pool.cc run them."""
  if not fused.conv_fits(32, 3, 64, 1, jnp.float32):
    return []
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((b, 13, 13, 32), np.float32))
  kernel = jnp.asarray(rng.standard_normal((3, 3, 32, 64), np.float32) * 0.1)
  bias = jnp.zeros((64,), jnp.float32)
  dy = jnp.asarray(rng.standard_normal((b, 11, 11, 64), np.float32))
  lax_conv = lambda x, kernel, bias: jax.lax.conv_general_dilated(
      x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")) + bias
  fns = {}
  for name, conv in (("Eigen", lax_conv), ("conv2d.cc", fused.conv2d)):
    grad = lambda argnum, conv=conv: jax.jit(
        lambda x, kernel: jax.vjp(lambda *a: conv(*a, bias), x, kernel)[1](dy)[argnum],
        compiler_options=opts)
    fns[f"{name} forward"] = functools.partial(jax.jit(conv, compiler_options=opts), x, kernel, bias)
    fns[f"{name} input gradient"] = functools.partial(grad(0), x, kernel)
    fns[f"{name} kernel gradient"] = functools.partial(grad(1), x, kernel)
  gflop = 2 * b * 11 * 11 * 9 * 32 * 64 / 1e9
  rows = [(f"second conv (13x13x32 -> 64), {name} ({gflop / sec:.0f} GFLOP/s)", sec)
          for name, sec in _interleaved(fns, repeats=15).items()]
  # Its relu and 2x2 max pool, forward (the pooled map returned, as the head reads it) and
  # forward + backward, as XLA fuses models.max_pool(relu(y)) and as relu_pool.cc runs them.
  dout = jnp.asarray(rng.standard_normal((b, 5, 5, 64), np.float32))
  fns = {}
  for name, pool in (("XLA", lambda y: models.max_pool(jax.nn.relu(y), 2)),
                     ("relu_pool.cc", lambda y: fused.relu_max_pool(y, 2))):
    both = lambda y, pool=pool: (lambda out, vjp: (out, vjp(dout)[0]))(*jax.vjp(pool, y))
    fns[f"{name} forward"] = functools.partial(jax.jit(pool, compiler_options=opts), dy)
    fns[f"{name} forward + backward"] = functools.partial(jax.jit(both, compiler_options=opts), dy)
  rows += [(f"second conv's relu + 2x2 max pool, {name}", sec)
           for name, sec in _interleaved(fns, repeats=15).items()]
  return rows


def main(argv):
  del argv
  b, k = FLAGS.batch_size, FLAGS.steps
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (k * b, 28, 28, 1), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, k * b).astype(np.int32))
  x = steps.normalize(images[:b])
  rows = []
  opts = parallel.compiler_options()
  jit = lambda f: jax.jit(f, compiler_options=opts)
  for pool in ("reshape", "reduce_window"):
    c = mnist_cnn.get_config()
    c.pool_impl = pool
    model = models.create_model(c, 10)
    state = jax.device_put(experiment.create_train_state(c, model, (28, 28, 1), 1000))
    fwd = jit(lambda p, x: model.apply({"params": p}, x))
    grad = jit(jax.grad(lambda p, x: steps.cross_entropy(model.apply({"params": p}, x), labels[:b]).mean()))
    rows.append((f"forward ({pool} pool)", _time(lambda: fwd(state.params, x))))
    rows.append((f"forward+backward ({pool} pool)", _time(lambda: grad(state.params, x))))
    if pool == "reshape":  # the config's default: the train step rows below use it
      default_pool_state = state
  state = default_pool_state
  step = steps.make_train_step()
  default = jax.jit(step)
  rows.append(("train step, 1 per call, XLA:CPU default kernels (YNNPACK)",
                _time(lambda: default(state, images[:b], labels[:b]))))
  one = jit(step)
  rows.append((f"train step, 1 per call, {'Eigen' if opts else 'default'} kernels (research/parallel.py)",
               _time(lambda: one(state, images[:b], labels[:b]))))
  idx = jnp.arange(k * b, dtype=jnp.int32).reshape(k, b)

  def rolled(state):
    return jax.lax.scan(lambda s, i: step(s, images[i], labels[i]), state, idx)

  rolled = jit(rolled)
  rows.append((f"train step, {k} per call, rolled loop (lax.scan)", _time(lambda: rolled(state)) / k))
  unrolled = jit(steps.make_train_chunk(step, k))
  rows.append((f"train step, {k} per call, unrolled (research/steps.py)",
               _time(lambda: unrolled(state, images, labels, idx, k)) / k))
  rows += _formulations(images, labels, idx, k, opts)
  print(f"seed CNN, batch {b}, jax {jax.__version__} on {jax.devices()[0].platform} ({os.cpu_count()} CPUs)\n")
  print("| what | ms per step | images/s |\n|---|---|---|")
  for name, sec in rows:
    print(f"| {name} | {1000 * sec:.1f} | {b / sec:,.0f} |")


if __name__ == "__main__":
  app.run(main)
