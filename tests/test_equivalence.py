"""Exact Dense <-> Conv equivalence (research/equivalence.py) against Linen's own layers."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from research import equivalence

TOL = 1e-5

# (input H, W, C), features, kernel, strides, padding, dilation
CONV_CASES = [
    ((28, 28, 1), 32, (3, 3), (1, 1), "VALID", (1, 1)),   # the seed's Conv2D(32, 3x3)
    ((12, 10, 3), 5, (3, 3), (1, 1), "SAME", (1, 1)),
    ((11, 11, 2), 4, (5, 5), (2, 2), "SAME", (1, 1)),
    ((9, 13, 4), 6, (2, 3), (3, 2), "VALID", (1, 1)),
    ((10, 10, 2), 3, (3, 3), (1, 2), ((1, 2), (0, 3)), (1, 1)),
    ((12, 12, 1), 2, (3, 3), (1, 1), "SAME", (2, 2)),
    ((7, 7, 8), 16, (7, 7), (1, 1), "VALID", (1, 1)),     # kernel covers the whole input
    ((8, 8, 3), 4, (1, 1), (1, 1), "VALID", (1, 1)),      # 1x1 conv
]


def _max_diff(a, b):
  return float(jnp.max(jnp.abs(jnp.asarray(a) - jnp.asarray(b))))


@pytest.mark.parametrize("shape,features,kernel,strides,padding,dilation", CONV_CASES)
def test_conv_to_dense_matches_nn_conv(shape, features, kernel, strides, padding, dilation):
  conv = nn.Conv(features, kernel, strides=strides, padding=padding, kernel_dilation=dilation)
  x = jax.random.normal(jax.random.PRNGKey(0), (3,) + shape)
  params = conv.init(jax.random.PRNGKey(1), x)["params"]
  params = {"kernel": params["kernel"],
            "bias": jax.random.normal(jax.random.PRNGKey(2), params["bias"].shape)}
  y = conv.apply({"params": params}, x)
  w, b, out_shape = equivalence.conv_to_dense(params["kernel"], params["bias"], shape, strides,
                                              padding, dilation)
  assert out_shape == y.shape[1:]
  assert w.shape == (np.prod(shape), np.prod(y.shape[1:]))
  y_dense = x.reshape(3, -1) @ w + b
  assert _max_diff(y_dense, y.reshape(3, -1)) <= TOL
  # Weight sharing: the dense matrix holds the conv's weights and zeros, nothing else.
  assert set(np.unique(w)) - {0.0} <= set(np.asarray(params["kernel"]).ravel().tolist())


@pytest.mark.parametrize("shape,features,kernel,strides,padding", [
    ((14, 14, 1), 8, (3, 3), (1, 1), "VALID"),
    ((10, 9, 3), 4, (3, 2), (2, 1), "SAME"),
    ((8, 8, 2), 5, (4, 4), (2, 2), "VALID"),
])
def test_conv_local_to_dense_matches_nn_conv_local(shape, features, kernel, strides, padding):
  layer = nn.ConvLocal(features, kernel, strides=strides, padding=padding)
  x = jax.random.normal(jax.random.PRNGKey(3), (2,) + shape)
  params = layer.init(jax.random.PRNGKey(4), x)["params"]
  params = {"kernel": params["kernel"],
            "bias": jax.random.normal(jax.random.PRNGKey(5), params["bias"].shape)}
  y = layer.apply({"params": params}, x)
  w, b, out_shape = equivalence.conv_local_to_dense(params["kernel"], params["bias"], shape,
                                                    kernel, strides, padding)
  assert out_shape == y.shape[1:]
  assert _max_diff(x.reshape(2, -1) @ w + b, y.reshape(2, -1)) <= TOL


@pytest.mark.parametrize("shape,features", [((28, 28, 1), 128), ((5, 7, 3), 10), ((1, 30, 1), 16),
                                            ((32, 32, 3), 4)])
def test_dense_to_conv_matches_nn_dense(shape, features):
  dense = nn.Dense(features)
  x = jax.random.normal(jax.random.PRNGKey(6), (4,) + shape)
  params = dense.init(jax.random.PRNGKey(7), x.reshape(4, -1))["params"]
  params = {"kernel": params["kernel"],
            "bias": jax.random.normal(jax.random.PRNGKey(8), params["bias"].shape)}
  y = dense.apply({"params": params}, x.reshape(4, -1))
  kernel, bias = equivalence.dense_to_conv(params["kernel"], params["bias"], shape)
  conv = nn.Conv(features, shape[:2], padding="VALID")
  y_conv = conv.apply({"params": {"kernel": kernel, "bias": bias}}, x)
  assert y_conv.shape == (4, 1, 1, features)
  assert _max_diff(y_conv.reshape(4, -1), y) <= TOL


def test_round_trip_dense_conv_dense_is_identity():
  shape, features = (6, 5, 2), 7
  w = np.random.default_rng(0).standard_normal((np.prod(shape), features)).astype(np.float32)
  b = np.arange(features, dtype=np.float32)
  kernel, bias = equivalence.dense_to_conv(w, b, shape)
  w2, b2, out_shape = equivalence.conv_to_dense(kernel, bias, shape)
  assert out_shape == (1, 1, features)
  np.testing.assert_array_equal(w2, w)
  np.testing.assert_array_equal(b2, b)


def test_seed_parameter_counts():
  # The seed's table: Conv2D(32, 3x3) on 28x28x1 has 320 parameters; the dense layer that
  # computes the same map has 784 * 26*26*32 weights (+ biases), 9 nonzeros per column.
  sizes = equivalence.dense_equivalent_size((28, 28, 1), (3, 3, 1, 32))
  assert sizes["conv_params"] == 320
  assert sizes["output_shape"] == (26, 26, 32)
  assert sizes["dense_params"] == 784 * 26 * 26 * 32 + 26 * 26 * 32
  assert sizes["dense_nonzero_weights"] == 26 * 26 * 32 * 9


def test_mismatched_shapes_raise():
  with pytest.raises(ValueError, match="input channels"):
    equivalence.conv_to_dense(np.zeros((3, 3, 2, 4)), None, (8, 8, 1))
  with pytest.raises(ValueError, match="flattens"):
    equivalence.dense_to_conv(np.zeros((10, 4)), None, (3, 3, 1))
