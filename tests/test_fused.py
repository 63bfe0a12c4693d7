"""conv_impl='fused' (research/cpu/fused.py): the conv -> bias -> relu -> max-pool block as one
XLA:CPU kernel computes what nn.Conv, nn.relu and models.max_pool compute, and the plain
convolution kernel what nn.Conv computes, values and gradients; and the project picks them, or
falls back, in the open."""
import os
import shutil

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_config
from research import UserError, experiment, models
from research.cpu import build, fused

# A C++ compiler is what the kernel needs from the machine; where there is one, a failed build is
# a failure of the project, not a reason to skip.
pytestmark = pytest.mark.skipif(
    not (os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")),
    reason="no C++ compiler: conv_impl='fused' is unavailable and 'auto' uses 'hybrid'")
# Float32 sums in another order than the float64 reference (tests/test_convdot.py's reasoning).
TOLERANCE = 1e-4


def _reference(features, k, strides, padding, pool, dtype):
  class Block(nn.Module):
    @nn.compact
    def __call__(self, x):
      x = nn.Conv(features, (k, k), strides=(strides, strides), padding=padding, dtype=dtype,
                  param_dtype=dtype, name="Conv_0")(x)
      return models.max_pool(nn.relu(x), pool)
  return Block()


@pytest.mark.parametrize("channels,k,features,strides,padding,pool,size", [
    (1, 3, 32, 1, "VALID", 2, 28),  # the seed CNN's first layer
    (3, 3, 16, 2, "SAME", 2, 15),   # RGB, strided, padded
    (1, 5, 64, 1, "VALID", 3, 17),  # a 13x13 map pooled by 3: the last row and column dropped
    (3, 3, 32, 1, "VALID", 1, 9),   # no pooling
])
def test_block_matches_float64_reference(channels, k, features, strides, padding, pool, size):
  rng = np.random.default_rng(size + channels)
  x = rng.uniform(size=(3, size, size, channels)).astype(np.float32)
  x[0, : 2 * size // 3, : 2 * size // 3] = 0.0  # a flat region: windows whose maxima tie
  ours = fused.ConvReluPool(features, k, strides, padding, pool)
  ref = _reference(features, k, strides, padding, pool, jnp.float32)
  params = ref.init(jax.random.PRNGKey(0), x)["params"]["Conv_0"]
  params = {**params, "bias": rng.normal(scale=0.1, size=features).astype(np.float32)}
  assert jax.tree.map(np.shape, ours.init(jax.random.PRNGKey(0), x)["params"]) == \
      jax.tree.map(np.shape, params)
  dy = rng.normal(size=ref.apply({"params": {"Conv_0": params}}, x).shape)
  y = _assert_matches_float64(ours, _reference(features, k, strides, padding, pool, jnp.float64),
                              lambda p: {"Conv_0": p}, params, x, dy)
  # The tied windows really are there: outputs of image 0 that equal relu(bias) everywhere.
  assert (np.asarray(y[0]) == np.maximum(params["bias"], 0)).all(axis=-1).sum() >= 1


def _assert_matches_float64(ours, ref64, wrap, params, x, dy):
  """`ours` (float32) against `ref64` (its float64 reference, whose parameters are wrap(params)):
  the output and the gradients of sum(output * dy) for x, the kernel and the bias. Returns the
  output."""
  def grads(module, wrap, dtype):
    def f(p, x):
      y = module.apply({"params": wrap(p)}, x)
      return (y * dy.astype(dtype)).sum(), y
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))

  (_, y), (g_params, g_x) = grads(ours, lambda p: p, jnp.float32)(params, x)
  with jax.enable_x64(True):
    to64 = lambda t: jax.tree.map(lambda a: np.asarray(a, np.float64), t)
    (_, y_ref), (r_params, r_x) = grads(ref64, wrap, jnp.float64)(to64(params), to64(x))
    y_ref, r_params, r_x = jax.tree.map(np.asarray, (y_ref, r_params, r_x))
  for got, want, what in [(y, y_ref, "output"), (g_x, r_x, "input gradient"),
                          (g_params["kernel"], r_params["kernel"], "kernel gradient"),
                          (g_params["bias"], r_params["bias"], "bias gradient")]:
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape, what
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE * np.abs(want).max(), err_msg=what)
  return y


@pytest.mark.parametrize("channels,features,padding,size,batch", [
    (32, 64, "VALID", 13, 3),   # the seed CNN's second layer: rows of 11 (blocks of 6 and 5)
    (16, 32, "SAME", 9, 2),     # padded, rows of 9
    (64, 64, "VALID", 6, 17),   # more images than the kernel gradient's 16 partial sums
])
def test_conv_matches_float64_reference(channels, features, padding, size, batch):
  rng = np.random.default_rng(size + channels)
  x = rng.normal(size=(batch, size, size, channels)).astype(np.float32)
  ref = nn.Conv(features, (3, 3), padding=padding, name="Conv_0")
  params = ref.init(jax.random.PRNGKey(0), x)["params"]
  params = {**params, "bias": rng.normal(scale=0.1, size=features).astype(np.float32)}
  # Run on every CPU, also where `fused` does not use them (fused.tuned(): AVX-512 only).
  assert fused.conv_fits(channels, 3, features, 1, jnp.float32) == fused.tuned()
  ours = fused.Conv(features, 3, padding)
  assert jax.tree.map(np.shape, ours.init(jax.random.PRNGKey(0), x)["params"]) == \
      jax.tree.map(np.shape, params)
  dy = rng.normal(size=ref.apply({"params": params}, x).shape)
  ref64 = nn.Conv(features, (3, 3), padding=padding, dtype=jnp.float64, param_dtype=jnp.float64)
  _assert_matches_float64(ours, ref64, lambda p: p, params, x, dy)


def test_the_seed_cnn_runs_its_layers_as_kernels_where_tuned():
  model = models.create_model(tiny_config("cnn", conv_impl="fused"), 10)
  images = np.zeros((2, 28, 28, 1), np.float32)
  params = experiment.create_train_state(tiny_config("cnn"), model, (28, 28, 1), 1).params
  loss = lambda p: model.apply({"params": p}, images).sum()
  hlo = jax.jit(jax.grad(loss)).lower(params).as_text()
  # 28x28x1 -> 32 with its relu and pool as one kernel; 13x13x32 -> 64 as conv2d.cc's on an
  # AVX-512 CPU, else as `hybrid` (lax's convolution, which Eigen runs)
  assert hlo.count("research_ConvReluPoolForward") == 1
  assert hlo.count("research_ConvReluPoolKernelGrad") == 1
  kernels = 1 if fused.tuned() else 0
  assert hlo.count("research_Conv2dForward") == kernels
  assert hlo.count("research_Conv2dKernelGrad") == kernels
  assert hlo.count("research_Conv2dInputGrad") == kernels  # the first layer's output needs it
  assert ("convolution(" in hlo) == (not kernels)
  # the second layer's relu and pool as relu_pool.cc's kernels, on every CPU
  assert hlo.count("research_ReluPoolForward") == hlo.count("research_ReluPoolBackward") == 1


def test_auto_uses_fused_on_cpu_and_falls_back_saying_why(monkeypatch):
  config = tiny_config("cnn")
  assert fused.available() == (True, "")
  assert models.conv_block(config, "cpu").name == ("fused" if fused.tuned() else "hybrid")
  assert models.conv_block(config, "gpu") == models.conv_block(config, "tpu") == models.CONV
  # Where the kernels were tuned for the CPU (AVX-512): fused; elsewhere XLA's hybrid is faster.
  # jit over several devices would run the kernel's calls whole on each; pmap splits the batch.
  for tuned, name in ((True, "fused"), (False, "hybrid")):
    monkeypatch.setattr(fused, "tuned", lambda tuned=tuned: tuned)
    assert models.conv_block(config, "cpu").name == name
    assert models.conv_block(tiny_config("cnn", parallelism="pmap"), "cpu", 8).name == name
    assert models.conv_block(tiny_config("cnn", parallelism="jit"), "cpu", 8).name == "hybrid"
  with pytest.raises(UserError, match="XLA:CPU kernel .* the backend is tpu"):
    models.conv_block(tiny_config("cnn", conv_impl="fused"), "tpu")
  monkeypatch.setattr(build, "library", lambda source: (None, "no C++ compiler (test)"))
  assert models.conv_block(config, "cpu").name == "hybrid"
  with pytest.raises(UserError, match=r"cannot run here: no C\+\+ compiler \(test\)"):
    models.conv_block(tiny_config("cnn", conv_impl="fused"), "cpu")


def test_a_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
  monkeypatch.setenv("RESEARCH_KERNEL_CACHE", str(tmp_path / "cache"))
  # the build's mechanics on the smallest source (every other test uses the shared cache)
  path = build.library_path("relu_pool.cc")
  assert os.path.dirname(path) == str(tmp_path / "cache")
  with pytest.raises(RuntimeError, match="failed"):
    build._compile(shutil.which("false"), "relu_pool.cc", path)
  assert os.listdir(tmp_path / "cache") == []
  build._compile(os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++"),
                 "relu_pool.cc", path)
  assert os.listdir(tmp_path / "cache") == [os.path.basename(path)]
  build._compile("/nonexistent/compiler", "relu_pool.cc", path)  # built: no compiler needed again
  assert os.listdir(tmp_path / "cache") == [os.path.basename(path)]


def test_a_failed_kernel_disables_only_itself(monkeypatch):
  real = build.library
  monkeypatch.setattr(build, "library", lambda source: (
      (None, "building conv2d.cc: failed (test)") if source == "conv2d.cc" else real(source)))
  assert build.available() == (True, "building conv2d.cc: failed (test)")
  model = models.create_model(tiny_config("cnn", conv_impl="fused"), 10)
  params = experiment.create_train_state(tiny_config("cnn"), model, (28, 28, 1), 1).params
  hlo = jax.jit(lambda p: model.apply({"params": p}, np.zeros((2, 28, 28, 1), np.float32))).lower(
      params).as_text()
  assert hlo.count("research_ConvReluPoolForward") == 1  # the first layer's kernel still runs
  assert "research_Conv2dForward" not in hlo and "convolution(" in hlo  # the second: hybrid
  assert hlo.count("research_ReluPoolForward") == 1


@pytest.mark.parametrize("shape,pool", [
    ((5, 11, 11, 64), 2),  # the seed CNN's second layer: the last row and column dropped
    ((3, 9, 7, 32), 3),    # pooled by 3, not square
    ((2, 4, 4, 16), 1),    # relu alone
])
def test_relu_max_pool_is_bitwise_jaxs(shape, pool):
  rng = np.random.default_rng(pool)
  y = rng.normal(size=shape).astype(np.float32)
  y[0, :pool, :pool, :3] = 0.5   # a window whose positive maxima tie: they share dy
  y[0, :pool, pool:2 * pool] = 0.0  # all zeros: no gradient (relu's at 0 is 0)
  y[-1, -1, -1, -1] = np.nan  # only in a dropped row/column or its own window
  dy = rng.normal(size=(shape[0], shape[1] // pool, shape[2] // pool, shape[3])).astype(np.float32)
  ref = lambda y: models.max_pool(jax.nn.relu(y), pool)
  ours = lambda y: fused.relu_max_pool(y, pool)
  want, want_vjp = jax.vjp(ref, y)
  got, got_vjp = jax.vjp(jax.jit(ours), y)
  # Same operations in the same order as XLA's: equal bits, NaN where XLA has NaN.
  np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  np.testing.assert_array_equal(np.asarray(got_vjp(dy)[0]), np.asarray(want_vjp(dy)[0]))
  assert np.asarray(want_vjp(dy)[0])[0, 0, 0, 0] == np.float32(dy[0, 0, 0, 0] / pool**2)
  assert fused.pool_fits(shape[3], pool, jnp.float32)
  assert not fused.pool_fits(24, pool, jnp.float32)  # features not compiled: XLA's relu and pool
