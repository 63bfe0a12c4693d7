import jax
import jax.numpy as jnp
import numpy as np
import pytest
import flax.linen as nn

from configs import mnist_cnn, mnist_mlp
from research import UserError, models


def _params(model, shape=(28, 28, 1)):
  return model.init(jax.random.PRNGKey(0), jnp.zeros((1,) + shape))["params"]


def test_seed_parameter_counts():
  # The Keras models of ../shared/seeds/: model.count_params() of each.
  mlp = models.create_model(mnist_mlp.get_config(), 10)
  cnn = models.create_model(mnist_cnn.get_config(), 10)
  p_mlp, p_cnn = _params(mlp), _params(cnn)
  assert models.count_params(p_mlp) == 101_770
  assert models.count_params(p_mlp["Dense_0"]) == 100_480  # Dense 784 -> 128
  assert models.count_params(p_cnn) == 34_826
  assert models.count_params(p_cnn["Conv_0"]) == 320  # Conv2D 3x3x1 -> 32


def test_tabular_mlp_widths():
  c = mnist_mlp.get_config()
  c.mlp_hidden = (64, 32)
  p = _params(models.create_model(c, 10), (5,))  # the seed's 5 sensor readings
  assert models.count_params(p) == (5 * 64 + 64) + (64 * 32 + 32) + (32 * 10 + 10)


@pytest.mark.parametrize("name", ["mlp", "cnn", "lcn"])
def test_output_shapes(name):
  c = mnist_cnn.get_config()
  c.model = name
  model = models.create_model(c, 10)
  x = jax.random.uniform(jax.random.PRNGKey(1), (3, 28, 28, 1))
  assert model.apply({"params": _params(model)}, x).shape == (3, 10)


def test_mnist1d_models_have_the_papers_shapes():
  """configs/mnist1d.py's MLP and CNN: the repository's MLPBase (100 -> 100 residual -> 10:
  15,210 parameters) and ConvBase (kernels 5, 3, 3, stride 2, padding 1: 40 -> 19 -> 10 -> 5,
  then 125 -> 10: 5,210)."""
  from configs import mnist1d
  x = jax.random.normal(jax.random.PRNGKey(4), (3, 40))
  mlp = models.create_model(mnist1d.get_config("mlp"), 10)
  p = _params(mlp, (40,))
  assert models.count_params(p) == 15_210
  # The residual: the second layer's output is added to its input.
  h = jax.nn.relu(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
  h = h + jax.nn.relu(h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"])
  want = h @ p["Dense_2"]["kernel"] + p["Dense_2"]["bias"]
  np.testing.assert_allclose(mlp.apply({"params": p}, x), want, rtol=1e-5, atol=1e-5)
  cnn = models.create_model(mnist1d.get_config("cnn"), 10)
  q = _params(cnn, (40,))
  assert models.count_params(q) == 5_210 and q["Dense_0"]["kernel"].shape == (125, 10)
  bad = mnist1d.get_config("cnn")
  bad.cnn1d_kernels = (5, 3)
  with pytest.raises(UserError, match="one kernel per conv"):
    models.check_config(bad)


def test_mnist1d_gru_reads_both_ways():
  """configs/mnist1d.py:gru: the paper's GRUBase shape (6 units each way, every step's outputs
  to the classifier: 480 -> 10), with flax's 4 bias vectors a cell."""
  from configs import mnist1d
  model = models.create_model(mnist1d.get_config("gru"), 10)
  p = _params(model, (40,))
  assert models.count_params(p) == 2 * (3 * (1 * 6 + 6 * 6) + 4 * 6) + 480 * 10 + 10
  x = jax.random.normal(jax.random.PRNGKey(3), (2, 40))
  out = model.apply({"params": p}, x)
  assert out.shape == (2, 10) and np.isfinite(np.asarray(out)).all()
  one_way = models.GRUNet(bidirectional=False)
  q = one_way.init(jax.random.PRNGKey(0), x)["params"]
  assert models.count_params(q) == 3 * (1 * 6 + 6 * 6) + 4 * 6 + 240 * 10 + 10


def test_mnist1d_gru_torch_is_pytorchs_layout():
  """configs/mnist1d.py:gru_torch: PyTorch's GRU (6 bias vectors a cell: 5,134 parameters, the
  paper's count), its weights uniform in ±1/√6 and the classifier's in ±1/√480; one step
  against PyTorch's equations written out."""
  from configs import mnist1d
  model = models.create_model(mnist1d.get_config("gru_torch"), 10)
  p = _params(model, (40,))
  assert models.count_params(p) == 5_134
  leaves = jax.tree_util.tree_leaves({k: v for k, v in p.items() if k != "Dense_0"})
  assert len(leaves) == 2 * 12 and max(float(np.abs(a).max()) for a in leaves) <= 6 ** -0.5
  assert float(np.abs(p["Dense_0"]["kernel"]).max()) <= 480 ** -0.5
  gru = models.TorchGRUCell(3)
  x, h = jax.random.normal(jax.random.PRNGKey(1), (2, 1)), jax.random.normal(
      jax.random.PRNGKey(2), (2, 3))
  q = gru.init(jax.random.PRNGKey(0), h, x)["params"]
  lin = lambda name, v: v @ np.asarray(q[name]["kernel"]) + np.asarray(q[name]["bias"])
  sig = lambda v: 1 / (1 + np.exp(-v))
  r, z = sig(lin("ir", x) + lin("hr", h)), sig(lin("iz", x) + lin("hz", h))
  n = np.tanh(lin("in", x) + r * lin("hn", h))
  np.testing.assert_allclose(gru.apply({"params": q}, h, x)[0], (1 - z) * n + z * h,
                             rtol=1e-5, atol=1e-6)


def test_reshape_pool_equals_flax_max_pool():
  x = jax.random.normal(jax.random.PRNGKey(2), (4, 11, 13, 5))  # odd sizes: tails dropped
  ours = models.max_pool(x, 2)
  ref = nn.max_pool(x, (2, 2), strides=(2, 2))
  assert ours.shape == ref.shape == (4, 5, 6, 5)
  np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))


def test_pool_impls_give_same_logits():
  c = mnist_cnn.get_config()
  a = models.create_model(c, 10)
  c.pool_impl = "reduce_window"
  b = models.create_model(c, 10)
  params = _params(a)
  x = jax.random.uniform(jax.random.PRNGKey(3), (8, 28, 28, 1))
  np.testing.assert_allclose(a.apply({"params": params}, x), b.apply({"params": params}, x),
                             rtol=0, atol=1e-6)


def test_unknown_model_is_a_user_error():
  c = mnist_cnn.get_config()
  c.model = "transformer"
  with pytest.raises(UserError, match="unknown model 'transformer'"):
    models.create_model(c, 10)


@pytest.mark.parametrize("shape,features", [((28, 28, 1), 32), ((13, 13, 32), 64), ((9, 7, 3), 5)])
def test_locally_connected_is_conv_local(shape, features):
  """The LCN's fast layer computes nn.ConvLocal (same params) to float32 rounding, forward and
  backward, on MNIST-sized and odd shapes."""
  x = jax.random.normal(jax.random.PRNGKey(1), (4,) + shape)
  ref = nn.ConvLocal(features, (3, 3), padding="VALID")
  fast = models.LocallyConnected(features, 3)
  params = ref.init(jax.random.PRNGKey(0), x)
  assert jax.tree.map(jnp.shape, fast.init(jax.random.PRNGKey(0), x)) == jax.tree.map(
      jnp.shape, params)
  np.testing.assert_allclose(fast.apply(params, x), ref.apply(params, x), atol=1e-5, rtol=1e-5)

  def loss(module):
    return lambda p, x: jnp.sum(jnp.sin(module.apply(p, x)))

  g_fast = jax.grad(loss(fast), argnums=(0, 1))(params, x)
  g_ref = jax.grad(loss(ref), argnums=(0, 1))(params, x)
  for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_lcn_parameter_tree_is_conv_locals():
  c = mnist_cnn.get_config()
  c.model = "lcn"
  p = _params(models.create_model(c, 10))
  assert sorted(p) == ["ConvLocal_0", "ConvLocal_1", "Dense_0"]
  assert p["ConvLocal_0"]["kernel"].shape == (26, 26, 9, 32)
  assert p["ConvLocal_1"]["kernel"].shape == (11, 11, 288, 64)
