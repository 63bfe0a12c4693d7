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
