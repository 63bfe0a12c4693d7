"""A chunk of train steps: rolled (lax.scan, GPU/TPU) and unrolled (CPU) compute the same
thing, the CPU program stays short whatever steps_per_call says, and the profiler switch writes
a trace."""
import glob
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from configs import mnist_cnn, mnist_mlp
from research import data, experiment, models, steps, train


def _fake_mnist(n=1024, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
  labels = rng.integers(0, 10, n).astype(np.int32)
  return data.Dataset("fake", images, labels, images[:256], labels[:256], 10)


def test_rolled_and_unrolled_chunks_train_the_same_params():
  # A small MLP: the chunk's loop, masking and metrics do not depend on the model, and an
  # unrolled CNN chunk takes XLA:CPU ~10 s to compile (the CNN's rolled chunk is what the TPU
  # preflight compiles).
  c = mnist_mlp.get_config()
  c.mlp_hidden = (16,)
  ds = _fake_mnist()
  model = models.create_model(c, 10)
  state = experiment.create_train_state(c, model, ds.image_shape, 100)
  step = steps.make_train_step()
  idx = np.random.default_rng(1).integers(0, len(ds.train_labels), (5, 8)).astype(np.int32)
  out = {}
  for rolled in (False, True):
    chunk = jax.jit(steps.make_train_chunk(step, 5, rolled))
    s, m = state, []
    for num_steps in (5, 3):  # a full chunk, then a short one: steps 3 and 4 must not count
      s, metrics = chunk(s, ds.train_images, ds.train_labels, idx, num_steps)
      m.append(metrics["loss"][:num_steps])
    out[rolled] = (jax.device_get(s), np.concatenate(m))
  (a, loss_a), (b, loss_b) = out[False], out[True]
  assert int(a.step) == int(b.step) == 8
  # Float32 rounding apart: XLA fuses and orders a loop body's reductions differently from the
  # same ops in straight-line code, so sums may differ in the last bits (~1e-7 relative); eight
  # Adam steps of lr 1e-3 keep such differences near 1e-6 in the params.
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(x, y, rtol=0, atol=1e-5)
  np.testing.assert_allclose(loss_a, loss_b, rtol=1e-5)
  assert not np.allclose(jax.tree.leaves(a.params)[0], jax.tree.leaves(state.params)[0])


def _convolutions(program, batch_size):
  state = program.abstract_state()
  idx = jax.ShapeDtypeStruct((program.steps_per_call, batch_size), jnp.int32)
  images = jax.ShapeDtypeStruct((1024, 28, 28, 1), jnp.uint8)
  labels = jax.ShapeDtypeStruct((1024,), jnp.int32)
  text = jax.jit(program.train_chunk).lower(state, images, labels, idx, 1).as_text()
  return len(re.findall(r"stablehlo\.convolution", text))


def test_gpu_config_compiles_a_short_program_on_cpu():
  # `:gpu` asks for 117 steps per call. On CPU the program holds CPU_MAX_STEPS_PER_CALL of them
  # (fully unrolled, 117 would take minutes to compile); on GPU/TPU one step in a rolled loop.
  config = mnist_cnn.get_config("gpu")
  assert config.steps_per_call == 117
  ds = _fake_mnist()
  one = mnist_cnn.get_config("gpu")
  one.steps_per_call = 1
  # Convolutions count the steps in a program: one formulation on every platform ('auto' runs
  # the CPU's first layer as a dot).
  config.conv_impl = one.conv_impl = "nn.Conv"
  per_step = _convolutions(experiment.Program(one, ds, "cpu", 1), config.batch_size)
  assert per_step >= 5  # two forward convolutions, their gradients

  cpu = experiment.Program(config, ds, "cpu", 1)
  assert (cpu.steps_per_call, cpu.rolled) == (steps.CPU_MAX_STEPS_PER_CALL, False) == (10, False)
  assert _convolutions(cpu, config.batch_size) == 10 * per_step

  gpu = experiment.Program(config, ds, "gpu", 1)
  assert (gpu.steps_per_call, gpu.rolled) == (117, True)
  assert _convolutions(gpu, config.batch_size) == per_step  # the loop body, once


def test_default_cpu_chunk_is_the_straight_line_program():
  assert steps.chunk_plan("cpu", 10) == (10, False)  # the program every earlier result ran
  assert steps.chunk_plan("cpu", 1) == (1, False)
  assert steps.chunk_plan("tpu", 10) == (10, True)


def test_profile_steps_writes_a_trace(mnist, tmp_path):
  workdir = tmp_path / "run"
  config = tiny_config("mlp", num_train_steps=15, steps_per_call=5, log_every_steps=5,
                       profile_steps=5)
  results = train.train_and_evaluate(config, str(workdir))
  assert results["steps"] == 15
  traces = glob.glob(str(workdir / "tensorboard" / "plugins" / "profile" / "*" / "*.xplane.pb"))
  assert len(traces) == 1 and os.path.getsize(traces[0]) > 0
