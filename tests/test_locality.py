"""β-LASSO (research/optimizers.py), the locality measures (research/locality.py), the dense nets
that log them (models FC: fc, s_fc, d_fc) and the shuffled-pixels symmetry."""
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import tiny_config
from configs import common
from research import equivalence, experiment, locality, models, optimizers, train, transforms


# --- β-LASSO ------------------------------------------------------------------------------


def test_beta_lasso_step_by_hand():
  lr, lam, beta, mu = 0.1, 0.01, 10.0, 0.9  # threshold β·λ = 0.1
  params = {"Dense_0": {"kernel": jnp.array([0.5, -0.5, 0.12, -0.11, 0.0]),
                        "bias": jnp.array([0.5, 0.0])}}
  g1 = {"Dense_0": {"kernel": jnp.array([1.0, 1.0, 0.1, 0.0, -3.0]),
                    "bias": jnp.array([1.0, -1.0])}}
  g2 = {"Dense_0": {"kernel": jnp.array([0.0, 0.0, 0.0, 0.0, 0.0]),
                    "bias": jnp.array([0.0, 0.0])}}
  tx = optimizers.beta_lasso(lr, lam, beta, momentum=mu)
  state = tx.init(params)
  u, state = tx.update(g1, state, params)
  p1 = optax.apply_updates(params, u)
  # Step 1, m = g1. kernel: θ - 0.1 (g + 0.01 sign θ):
  #   0.5 - 0.1 (1 + 0.01) = 0.399 (kept); -0.5 - 0.1 (1 - 0.01) = -0.599 (kept);
  #   0.12 - 0.1 (0.1 + 0.01) = 0.109 (kept); -0.11 - 0.1 (0 - 0.01) = -0.109 (kept);
  #   0 - 0.1 (-3 + 0) = 0.3 (kept: a zero weight lifted over the threshold).
  np.testing.assert_allclose(p1["Dense_0"]["kernel"], [0.399, -0.599, 0.109, -0.109, 0.3],
                             rtol=1e-6)
  np.testing.assert_allclose(p1["Dense_0"]["bias"], [0.4, 0.1], rtol=1e-6)  # plain SGD
  u, state = tx.update(g2, state, p1)
  p2 = optax.apply_updates(p1, u)
  # Step 2, m = 0.9 g1: 0.399 - 0.1 (0.9 + 0.01) = 0.308; -0.599 - 0.1 (0.9 - 0.01) = -0.688;
  #   0.109 - 0.1 (0.09 + 0.01) = 0.099 < 0.1 -> 0; -0.109 - 0.1 (0 - 0.01) = -0.108 (kept);
  #   0.3 - 0.1 (-2.7 + 0.01) = 0.569.
  expected = np.array([0.308, -0.688, 0.0, -0.108, 0.569], np.float32)
  np.testing.assert_allclose(p2["Dense_0"]["kernel"], expected, rtol=1e-5)
  assert float(p2["Dense_0"]["kernel"][2]) == 0.0  # exactly zero through apply_updates
  np.testing.assert_allclose(p2["Dense_0"]["bias"], [0.31, 0.19], rtol=1e-5)
  assert optimizers.sparsity(p2) == {"Dense_0": 0.2}


def test_the_config_wires_beta_lasso():
  c = tiny_config("fc", optimizer="beta_lasso", lasso_lambda=1e-3, lasso_beta=20.0)
  common.check(c)
  tx = experiment.create_optimizer(c, 10)
  params = {"Dense_0": {"kernel": jnp.full((3,), 0.01), "bias": jnp.zeros(1)}}
  u, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  # 0.01 - lr·λ is under β·λ = 0.02: zeroed.
  assert np.all(optax.apply_updates(params, u)["Dense_0"]["kernel"] == 0)


@pytest.mark.parametrize("parallelism", ["single", "jit"])
def test_a_beta_lasso_run_resumes_to_the_same_bits(mnist, tmp_path, caplog, parallelism):
  config = tiny_config("fc", optimizer="beta_lasso", learning_rate=0.05, lasso_lambda=1e-3,
                       lasso_beta=20.0, num_train_steps=20, checkpoint_every_steps=10,
                       mlp_hidden=(32,), parallelism=parallelism)
  whole = train.train_and_evaluate(config, str(tmp_path / "whole"))
  shutil.copytree(tmp_path / "whole", tmp_path / "resumed")
  shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "20")
  (tmp_path / "resumed" / "results.json").unlink()
  with caplog.at_level("INFO"):
    resumed = train.train_and_evaluate(config, str(tmp_path / "resumed"))
  assert "resumed from the checkpoint at step 10" in caplog.text
  assert whole["optimizer"] == "beta_lasso" and whole["test_accuracy"] > 0.3
  assert (resumed["test_loss"], resumed["test_accuracy"]) == (whole["test_loss"],
                                                              whole["test_accuracy"])
  a = experiment.load_model(str(tmp_path / "whole"))[1]
  b = experiment.load_model(str(tmp_path / "resumed"))[1]
  assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert 0 < np.mean(np.asarray(a["Dense_0"]["kernel"]) == 0) < 1  # the threshold bit
  # The locality of Dense_0 was logged at each evaluation (here: the end).
  import json
  lines = [json.loads(l) for l in open(tmp_path / "whole" / "metrics.jsonl")]
  weights = [l for l in lines if l["split"] == "weights"]
  assert [w["step"] for w in weights] == [0, 20]
  assert weights[-1]["weights_left/Dense_0"] < 1.0 and 0 < weights[-1]["locality/Dense_0"] < 1


# --- the models -----------------------------------------------------------------------------


@pytest.mark.parametrize("name,alpha,hidden,count", [
    ("fc", 4, (512,), 407_050), ("fc", 4, (128,), 101_770), ("s_fc", 4, (128,), 691_770),
    ("d_fc", 1, (128,), 1_247_650), ("d_fc", 4, (128,), 12_550_570)])
def test_parameter_counts(name, alpha, hidden, count):
  c = common.base_config()
  c.model, c.fc_alpha, c.mlp_hidden = name, alpha, hidden
  model = models.create_model(c, 10)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))
  assert models.count_params(params) == count


# --- the locality measure -------------------------------------------------------------------


def test_a_convs_dense_matrix_is_perfectly_local_at_its_kernel_size():
  k = np.random.default_rng(0).normal(size=(5, 5, 1, 4)).astype(np.float32)
  dense = np.asarray(equivalence.conv_to_dense(k, None, (28, 28, 1), padding="VALID")[0])
  mass = locality.pixel_mass(dense, (28, 28, 1))
  np.testing.assert_allclose(locality.window_fraction(mass, 5), 1.0)
  assert np.all(locality.window_fraction(mass, 3) < 1.0)
  np.testing.assert_array_less(locality.rf_size(mass), 5.5)
  m = locality.measure(dense, (28, 28, 1), window=5)
  assert m["locality"] == pytest.approx(1.0) and m["chance"] < 0.1 and m["units"] == 24 * 24 * 4


def test_random_weights_score_the_chance_level():
  rng = np.random.default_rng(1)
  w = rng.normal(size=(784, 256))
  m = locality.measure(w, (28, 28, 1), window=7)
  # Uniform mass: a 7x7 window around the centroid holds ~49/784 of it (a little more: the
  # best of the windows that contain the centroid).
  assert m["locality"] == pytest.approx(49 / 784, abs=0.015)
  assert m["locality"] == pytest.approx(m["chance"], abs=0.005)


def test_the_chance_level_keeps_sparsity_on_the_varying_pixels():
  # Only a 16x16 centre varies; every unit has 20 random weights there (the rest zero).
  rng = np.random.default_rng(2)
  varying = np.zeros((28, 28), bool)
  varying[6:22, 6:22] = True
  varying = varying.reshape(-1)
  w = np.zeros((784, 200))
  for u in range(200):
    w[rng.choice(np.flatnonzero(varying), 20, replace=False), u] = rng.normal(size=20)
  fair = locality.measure(w, (28, 28, 1), 7, varying=varying)
  unfair = locality.measure(w, (28, 28, 1), 7)  # permuted over all 784 pixels
  # Sparse units on a 16x16 support score far above 49/784 by chance alone; the fair chance
  # level (permuted among the varying pixels) says so, the unfair one does not.
  assert fair["locality"] == pytest.approx(fair["chance"], abs=0.02)
  assert fair["chance"] > 0.15 and unfair["chance"] < fair["chance"] - 0.05
  assert fair["weights_left"] == pytest.approx(20 / 784)
  cp = locality.chance_permutation(w, varying, seed=0)
  assert np.all(cp[~varying] == w[~varying])
  assert np.all((cp != 0).sum(axis=0) == 20)


def test_unpermuting_recovers_a_local_pattern_exactly():
  rng = np.random.default_rng(3)
  w = np.zeros((784, 3), np.float32)
  grid = w.reshape(28, 28, 3)
  grid[10:13, 4:7, 0] = rng.normal(size=(3, 3))
  grid[20:25, 20:25, 1] = 1.0
  grid[0:2, 26:28, 2] = -2.0
  perm = transforms.pixel_permutation((28, 28, 1), 0)
  # What a dense layer trained on shuffled pixels holds: row i weighs shuffled pixel i, which is
  # original pixel perm[i].
  images = rng.normal(size=(4, 28, 28, 1)).astype(np.float32)
  shuffled_w = w[perm]
  np.testing.assert_allclose(transforms.permute_pixels(images, perm).reshape(4, -1) @ shuffled_w,
                             images.reshape(4, -1) @ w, rtol=1e-5, atol=1e-5)
  back = locality.unpermute(shuffled_w, (28, 28, 1), perm)
  assert np.array_equal(back, w)
  assert locality.measure(shuffled_w, (28, 28, 1), 5, perm=perm)["locality"] == 1.0
  assert locality.measure(shuffled_w, (28, 28, 1), 5)["locality"] < 0.5


def test_a_sequence_uses_a_1_by_k_window():
  w = np.zeros((40, 2))
  w[10:15, 0] = 1.0
  w[:, 1] = 1.0
  mass = locality.pixel_mass(w, (1, 40, 1))
  np.testing.assert_allclose(locality.window_fraction(mass, 5), [1.0, 5 / 40])
  np.testing.assert_allclose(locality.rf_size(mass), [5, 36])


# --- the symmetry: shuffled training == permuted-initialisation training, un-permuted -------


@pytest.mark.parametrize("optimizer", ["sgd", "beta_lasso"])
def test_shuffled_training_is_permuted_init_training(mnist, optimizer):
  from research import steps
  config = tiny_config("fc", mlp_hidden=(64,), optimizer=optimizer, learning_rate=0.05,
                       lasso_lambda=5e-4, lasso_beta=20.0)
  model = models.create_model(config, 10)
  images = mnist.train_images[:640]
  labels = mnist.train_labels[:640]
  perm = transforms.pixel_permutation((28, 28, 1), 7)
  shuffled = transforms.permute_pixels(images, perm)
  tx = experiment.create_optimizer(config, 40)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 28, 28, 1)))["params"]

  @jax.jit
  def step(params, opt, x, y):
    def loss(p):
      return steps.cross_entropy(model.apply({"params": p}, steps.normalize(x)), y).mean()
    g = jax.grad(loss)(params)
    u, opt = tx.update(g, opt, params)
    return optax.apply_updates(params, u), opt

  def train_on(x, params):
    opt = tx.init(params)
    for s in range(20):
      b = slice(32 * s, 32 * (s + 1))
      params, opt = step(params, opt, x[b], labels[b])
    return params

  a = train_on(shuffled, params)  # shuffled pixels, the init as drawn
  permuted_init = {**params, "Dense_0": {**params["Dense_0"], "kernel": locality.unpermute(
      params["Dense_0"]["kernel"], (28, 28, 1), perm)}}
  b = train_on(images, permuted_init)  # original pixels, the init un-permuted
  ka = locality.unpermute(a["Dense_0"]["kernel"], (28, 28, 1), perm)
  np.testing.assert_allclose(ka, b["Dense_0"]["kernel"], atol=2e-6)
  for layer in ("Dense_1",):
    np.testing.assert_allclose(a[layer]["kernel"], b[layer]["kernel"], atol=2e-6)
  if optimizer == "beta_lasso":
    assert np.mean(np.asarray(ka) == 0) > 0.2
    assert np.array_equal(np.asarray(ka) == 0, np.asarray(b["Dense_0"]["kernel"]) == 0)
