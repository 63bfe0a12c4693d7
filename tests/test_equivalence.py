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


# --- Whole networks: a CNN and its eFCN (equivalence.cnn_to_fcn) -------------------------------

# features, kernel, padding, strides, pool, local, dense head, input shape
CNN_CASES = [
    ((4, 6), 3, "VALID", 1, 2, False, (), (28, 28, 1)),    # the seed's layout, narrower
    ((3, 4), 3, "SAME", 2, 1, False, (7,), (13, 11, 2)),   # SAME, stride 2, a hidden Dense
    ((2, 3), 2, "VALID", 2, 2, False, (), (20, 20, 3)),
    ((2, 4), 3, "SAME", 2, 2, True, (5,), (17, 17, 1)),    # locally connected
]


@pytest.mark.parametrize("features,kernel,padding,strides,pool,local,dense,shape", CNN_CASES)
def test_cnn_to_fcn_computes_the_same_logits(features, kernel, padding, strides, pool, local,
                                             dense, shape):
  from research import models
  cnn = models.CNN(features=features, kernel_size=kernel, padding=padding, strides=strides,
                   pool=pool, block=models.LOCAL if local else models.CONV, dense=dense,
                   num_classes=10)
  x = jax.random.uniform(jax.random.PRNGKey(0), (5,) + shape)
  params = cnn.init(jax.random.PRNGKey(1), x)["params"]
  fcn, fcn_params = equivalence.cnn_to_fcn(cnn, params, shape)
  assert fcn.as_dense and not fcn.local
  # The eFCN model's own init has exactly these shapes (the registry's 'fcn' builds this model).
  assert jax.tree.map(np.shape, fcn.init(jax.random.PRNGKey(2), x)["params"]) == jax.tree.map(
      np.shape, fcn_params)
  assert _max_diff(fcn.apply({"params": fcn_params}, x), cnn.apply({"params": params}, x)) <= 1e-5
  # Only conv layers change: the head's Dense layers are the CNN's own.
  for i in range(len(dense) + 1):
    np.testing.assert_array_equal(fcn_params[f"Dense_{i}"]["kernel"], params[f"Dense_{i}"]["kernel"])


def test_seed_cnn_and_its_efcn_agree_on_real_test_images(mnist):
  """The seed CNN (Conv 32 -> Conv 64, 34,826 params) and its 58.9M-parameter eFCN."""
  from research import models
  cnn = models.CNN()
  x = mnist.test_images[:200].astype(np.float32) / 255.0
  params = cnn.init(jax.random.PRNGKey(3), x[:1])["params"]
  fcn, fcn_params = equivalence.cnn_to_fcn(cnn, params, x.shape[1:])
  assert fcn_params["ConvDense_0"]["kernel"].shape == (784, 26 * 26 * 32)
  assert fcn_params["ConvDense_1"]["kernel"].shape == (13 * 13 * 32, 11 * 11 * 64)
  assert models.count_params(fcn_params) == 58_884_426
  logits = cnn.apply({"params": params}, x)
  assert _max_diff(fcn.apply({"params": fcn_params}, x), logits) <= 1e-4
  assert float(jnp.abs(logits).max()) > 1e-2  # not a vacuous comparison of zeros


def test_cnn_to_fcn_refuses_a_model_without_convs():
  from research import models
  with pytest.raises(ValueError, match="research.models.CNN"):
    equivalence.cnn_to_fcn(models.MLP(), {}, (28, 28, 1))


# --- Projections onto the locally connected and convolutional patterns -------------------------

PROJECTION_CASES = [((9, 9, 2), 3, 3, 1, "VALID"), ((8, 7, 1), 4, 3, 2, "SAME"),
                    ((10, 10, 3), 2, 2, 2, "VALID")]


@pytest.mark.parametrize("shape,features,kernel,strides,padding", PROJECTION_CASES)
def test_projections_are_orthogonal_and_nested(shape, features, kernel, strides, padding):
  rng = np.random.default_rng(0)
  geom = (shape, kernel, features, strides, padding)
  conv_kernel = rng.standard_normal((kernel, kernel, shape[2], features)).astype(np.float32)
  conv_w, _, out_shape = equivalence.conv_to_dense(conv_kernel, None, shape, strides, padding)
  w = rng.standard_normal(conv_w.shape).astype(np.float32)
  local, conv = equivalence.project_local(w, *geom), equivalence.project_conv(w, *geom)
  # Idempotent, and conv ⊂ local: projecting a conv matrix onto either pattern changes nothing.
  np.testing.assert_allclose(equivalence.project_local(local, *geom), local, atol=1e-6)
  np.testing.assert_allclose(equivalence.project_conv(conv, *geom), conv, atol=1e-6)
  np.testing.assert_allclose(equivalence.project_local(conv, *geom), conv, atol=1e-6)
  np.testing.assert_array_equal(equivalence.project_conv(conv_w, *geom), conv_w)
  np.testing.assert_array_equal(equivalence.project_local(conv_w, *geom), conv_w)
  # Orthogonal: the residual is orthogonal to the subspace (here to the projection itself).
  assert abs(float(np.sum((w - conv) * conv))) <= 1e-3 * float(np.sum(w * w))
  assert abs(float(np.sum((w - local) * local))) <= 1e-3 * float(np.sum(w * w))
  # A locally connected matrix lies in the local pattern but not in the conv one.
  lk = rng.standard_normal(out_shape[:2] + (shape[2] * kernel * kernel, features))
  local_w, _, _ = equivalence.conv_local_to_dense(lk, None, shape, kernel, strides, padding)
  np.testing.assert_allclose(equivalence.project_local(local_w, *geom), local_w)
  fractions = equivalence.subspace_fractions(local_w, *geom)
  assert fractions["outside_local"] == 0.0 and fractions["outside_conv"] > 0.5
  assert equivalence.subspace_fractions(conv_w, *geom) == {"outside_local": 0.0,
                                                           "outside_conv": 0.0}
  # The fractions are the norms of the residuals, exactly.
  fractions = equivalence.subspace_fractions(w, *geom)
  norm = np.linalg.norm(w)
  assert fractions["outside_local"] == pytest.approx(np.linalg.norm(w - local) / norm, rel=1e-5)
  assert fractions["outside_conv"] == pytest.approx(np.linalg.norm(w - conv) / norm, rel=1e-5)
  assert 0 < fractions["outside_local"] < fractions["outside_conv"] <= 1
