"""Training options for big batches: gradient accumulation, learning-rate warmup, weight decay."""
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import tiny_config
from research import UserError, experiment, models, steps, train


def _state(config, total=100):
  model = models.create_model(config, 10)
  return jax.tree.map(jnp.asarray, experiment.create_train_state(config, model, (28, 28, 1),
                                                                 total))


def test_micro_batches_give_the_steps_of_the_whole_batch():
  # SGD without momentum: params move by lr * gradient, so after n steps the two runs differ by
  # at most n * lr * (the gradients' difference). A batch's mean gradient summed as 4 means of 16
  # instead of one mean of 64 differs by float32 rounding: a few ulps of the largest per-example
  # terms, bounded here by 64 examples * 2**-23 * max|g| with a factor 4 to spare.
  config = tiny_config("mlp", optimizer="sgd", momentum=0.0, learning_rate=0.1,
                       lr_schedule="constant", batch_size=64)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (5, 64, 28, 28, 1), dtype=np.uint8)
  labels = rng.integers(0, 10, (5, 64)).astype(np.int32)
  whole, micro = jax.jit(steps.make_train_step()), jax.jit(steps.make_train_step(accum_steps=4))
  a = b = _state(config)
  for images_s, labels_s in zip(images, labels):
    g_max = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(
        jax.grad(lambda p: steps.cross_entropy(a.apply_fn({"params": p}, steps.normalize(images_s)),
                                               labels_s).mean())(a.params)))
    (a, ma), (b, mb) = whole(a, images_s, labels_s), micro(b, images_s, labels_s)
    assert abs(float(ma["loss"]) - float(mb["loss"])) <= 1e-5 * abs(float(ma["loss"]))
    assert float(ma["accuracy"]) == float(mb["accuracy"])
  tol = 5 * 0.1 * 4 * 64 * 2.0**-23 * g_max
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=tol)


def test_warmup_rises_linearly_then_follows_the_schedule():
  for schedule in ("constant", "cosine"):
    config = tiny_config("mlp", learning_rate=1e-2, lr_schedule=schedule, warmup_steps=10)
    lr = experiment.learning_rate(config, 110)
    assert [float(lr(s)) for s in (0, 5, 10)] == pytest.approx([0.0, 5e-3, 1e-2])
    assert float(lr(110)) == pytest.approx(1e-2 if schedule == "constant" else 0.0, abs=1e-9)
  # the first step's update is 0 (SGD: lr 0 at step 0), the second is not
  config = tiny_config("mlp", optimizer="sgd", momentum=0.0, warmup_steps=4, learning_rate=0.1)
  state = _state(config)
  step = jax.jit(steps.make_train_step())
  images = np.random.default_rng(1).integers(0, 256, (32, 28, 28, 1), dtype=np.uint8)
  labels = np.arange(32, dtype=np.int32) % 10
  first, _ = step(state, images, labels)
  second, _ = step(first, images, labels)
  assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(state.params),
                                                  jax.tree.leaves(first.params)))
  assert not all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(first.params),
                                                      jax.tree.leaves(second.params)))


def test_weight_decay_is_decoupled():
  params = {"w": jnp.full((3,), 2.0)}
  zero = {"w": jnp.zeros((3,))}
  for optimizer in ("adam", "sgd"):
    config = tiny_config("mlp", optimizer=optimizer, momentum=0.0, learning_rate=0.1,
                         lr_schedule="constant", weight_decay=0.01)
    tx = experiment.create_optimizer(config, 10)
    updates, _ = tx.update(zero, tx.init(params), params)
    # zero gradients: the update is the decay alone, -lr * wd * w
    np.testing.assert_allclose(np.asarray(updates["w"]), -0.1 * 0.01 * 2.0, rtol=1e-6)
  assert isinstance(experiment.create_optimizer(tiny_config("mlp"), 10), optax.GradientTransformation)


def test_a_batch_that_does_not_split_into_micro_batches_is_refused():
  with pytest.raises(UserError, match="must split into grad_accum_steps=3 equal micro-batches"):
    experiment.validate(tiny_config("mlp", batch_size=32, grad_accum_steps=3), 1, 1)


def test_a_run_records_its_training_options(mnist, tmp_path):
  results = train.train_and_evaluate(tiny_config("mlp", grad_accum_steps=2, warmup_steps=5,
                                                 weight_decay=1e-4, num_train_steps=10),
                                     str(tmp_path))
  assert (results["grad_accum_steps"], results["warmup_steps"], results["weight_decay"]) == (
      2, 5, 1e-4)
  assert results["steps"] == 10 and np.isfinite(results["test_loss"])


def test_a_run_with_these_options_resumes_to_the_same_bits(mnist, tmp_path):
  import shutil
  config = tiny_config("mlp", grad_accum_steps=2, warmup_steps=5, weight_decay=1e-4,
                       lr_schedule="cosine", num_train_steps=20, checkpoint_every_steps=10)
  whole = train.train_and_evaluate(config, str(tmp_path / "whole"))
  # The same workdir as if the run had been killed after its checkpoint at step 10.
  shutil.copytree(tmp_path / "whole", tmp_path / "resumed")
  shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "20")
  (tmp_path / "resumed" / "results.json").unlink()
  train_lines = lambda run: {r["step"]: r["time"] for r in map(json.loads, open(
      tmp_path / run / "metrics.jsonl")) if r["split"] == "train"}
  before = train_lines("resumed")
  started = time.time()
  resumed = train.train_and_evaluate(config, str(tmp_path / "resumed"))
  after = train_lines("resumed")
  # It went on from step 10: the lines up to it are the first run's, the later ones new.
  assert after[10] == before[10] and after[20] > started
  assert (resumed["test_loss"], resumed["test_accuracy"]) == (whole["test_loss"],
                                                              whole["test_accuracy"])
  a = experiment.load_model(str(tmp_path / "whole"))[1]
  b = experiment.load_model(str(tmp_path / "resumed"))[1]
  assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
