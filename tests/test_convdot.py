"""Every convolution formulation (research/cpu/convdot.py, and research/cpu/fused.py in the network)
computes nn.Conv's layer: the same parameters, outputs and gradients, to float32 rounding
(bfloat16 dots: to a stated bound)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import tiny_config
from configs import common
from research import UserError, experiment, models, parallel, train
from research.cpu import convdot, fused

IMPLS = common.CONV_IMPLS[1:]  # every formulation but 'auto'

# Float32 formulations sum in another order than the float64 reference: rounding of sums of at
# most a few thousand terms, ~sqrt(n) * 6e-8 of the summed magnitudes (the reasoning of
# tests/test_fast_paths.py), so 1e-4 of each array's largest value, while a wrong tap order,
# stride, padding or transpose is off by O(1). bfloat16 operands keep 8 bits of mantissa: each
# product is off by up to ~2 * 2^-9 relative, and sums of such products by about that of their
# magnitudes, so 2e-2 of the largest value (measured: below 5e-3).
TOLERANCE = {"xla": 1e-4, "im2col": 1e-4, "im2col_bf16": 2e-2, "hybrid": 1e-4, "fused": 1e-4}
# Through the whole seed CNN the bfloat16 roundings compound (dy is rounded before each layer's
# dots, and the first layer's gradient sees the second's error): measured 3-6% of each leaf's
# largest gradient on three batches (float32 formulations: below 2e-6), so 0.1 there.
NETWORK_TOLERANCE = {"nn.Conv": 1e-4, **TOLERANCE, "im2col_bf16": 0.1}


def _close(got, want, impl, what):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape, (impl, what)
  np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE[impl] * np.abs(want).max(),
                             err_msg=f"{impl}: {what}")


@pytest.mark.parametrize("impl", convdot.IMPLS[1:])
@pytest.mark.parametrize("padding,strides,channels,size", [
    ("VALID", 1, 1, 28), ("VALID", 1, 5, 13), ("SAME", 1, 3, 10), ("VALID", 2, 4, 11),
    ("SAME", 2, 2, 9)])
def test_layer_matches_nn_conv_forward_and_backward(impl, padding, strides, channels, size):
  rng = np.random.default_rng(size * 10 + channels)
  x = rng.normal(size=(4, size, size, channels)).astype(np.float32)
  ref = nn.Conv(6, (3, 3), strides=(strides, strides), padding=padding)
  ours = convdot.Conv(6, 3, strides, padding, impl)
  params = ref.init(jax.random.PRNGKey(0), x)["params"]
  params = {**params, "bias": rng.normal(size=6).astype(np.float32)}  # a bias that is not 0
  assert jax.tree.map(np.shape, ours.init(jax.random.PRNGKey(0), x)["params"]) == \
      jax.tree.map(np.shape, params)

  out_shape = ref.apply({"params": params}, x).shape
  dy = rng.normal(size=out_shape)  # a random cotangent

  def loss(module, dtype):
    def f(p, x):
      y = module.apply({"params": p}, x)
      return (y * dy.astype(dtype)).sum(), y
    return jax.jit(jax.value_and_grad(f, argnums=(0, 1), has_aux=True))

  (_, y), (g_params, g_x) = loss(ours, jnp.float32)(params, x)
  with jax.enable_x64(True):
    to64 = lambda t: jax.tree.map(lambda a: np.asarray(a, np.float64), t)
    (_, y_ref), (r_params, r_x) = loss(ref.clone(dtype=jnp.float64, param_dtype=jnp.float64),
                                       jnp.float64)(to64(params), to64(x))
    y_ref, r_params, r_x = jax.tree.map(np.asarray, (y_ref, r_params, r_x))
  assert y_ref.dtype == np.float64
  _close(y, y_ref, impl, "output")
  _close(g_x, r_x, impl, "input gradient")
  for name in ("kernel", "bias"):
    _close(g_params[name], r_params[name], impl, f"{name} gradient")


@pytest.mark.parametrize("impl", IMPLS)
def test_seed_cnn_step_gradients_match_float64_nn_conv(mnist, impl):
  # The whole seed CNN (both convs, pooling, the head) on real images, through the train step's
  # loss, with the compiler options the runs use.
  config = tiny_config("cnn", conv_impl=impl)
  model = models.create_model(config, 10)
  assert model.block.name == impl
  params = experiment.create_train_state(config, model, (28, 28, 1), 1).params
  images = mnist.train_images[:32].astype(np.float32) / 255.0
  labels = mnist.train_labels[:32]

  def loss_and_grads(model, params, images, options=None):
    def loss(p):
      logits = model.apply({"params": p}, images)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return jax.jit(jax.value_and_grad(loss), compiler_options=options)(params)

  value, grads = loss_and_grads(model, params, images,
                                parallel.compiler_options(ynnpack_dots=impl == "im2col_bf16"))
  with jax.enable_x64(True):
    to64 = lambda t: jax.tree.map(lambda a: np.asarray(a, np.float64), t)
    model64 = model.clone(dtype=np.float64, block=models.CONV)
    ref_value, ref_grads = loss_and_grads(model64, to64(params), to64(images))
    ref_value, ref_grads = float(ref_value), jax.tree.map(np.asarray, ref_grads)
  tol = NETWORK_TOLERANCE[impl]
  assert abs(float(value) - ref_value) <= tol * abs(ref_value)
  assert jax.tree.structure(grads) == jax.tree.structure(ref_grads)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    r = ref_grads
    for key in path:
      r = r[key.key]
    np.testing.assert_allclose(g, r, rtol=0, atol=tol * np.abs(r).max(),
                               err_msg=f"{impl} {jax.tree_util.keystr(path)}")


def test_auto_picks_per_backend_and_the_run_records_it(mnist, tmp_path):
  config = tiny_config("cnn")
  assert config.conv_impl == "auto"
  picked = "fused" if fused.available()[0] and fused.tuned() else "hybrid"
  assert models.conv_block(config, "cpu").name == picked
  assert models.conv_block(config, "tpu") == models.conv_block(config, "gpu") == models.CONV
  results = train.train_and_evaluate(tiny_config("cnn", num_train_steps=5), str(tmp_path / "run"))
  assert results["conv_impl"] == models.conv_block(config, jax.default_backend()).name
  assert results["cpu"]
  # A checkpoint of one formulation loads into the others: one parameter tree.
  _, params, _ = experiment.load_model(str(tmp_path / "run"))
  for impl in IMPLS:
    other = models.create_model(tiny_config("cnn", conv_impl=impl), 10)
    assert other.apply({"params": params}, np.zeros((1, 28, 28, 1), np.float32)).shape == (1, 10)


def test_unknown_conv_impl_is_one_clear_error():
  with pytest.raises(UserError, match="unknown conv_impl 'fft'"):
    models.create_model(tiny_config("cnn", conv_impl="fft"), 10)
