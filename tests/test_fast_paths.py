"""The fast paths compute what the plain path computes: fused (unrolled) multi-step calls and
K seeds vmapped into one program."""
import jax
import numpy as np

from conftest import tiny_config
from research import multiseed, train


def _params(workdir):
  return train.load_model(str(workdir))[1]


def test_fused_steps_equal_one_step_per_call(mnist, tmp_path):
  # 30 steps as 30 calls of 1 step, and as 3 calls of 10 fused steps (plus short chunks).
  one = train.train_and_evaluate(tiny_config("cnn", num_train_steps=30, steps_per_call=1,
                                             log_every_steps=30), str(tmp_path / "one"))
  fused = train.train_and_evaluate(tiny_config("cnn", num_train_steps=30, steps_per_call=10,
                                               log_every_steps=30), str(tmp_path / "fused"))
  for a, b in zip(jax.tree.leaves(_params(tmp_path / "one")), jax.tree.leaves(_params(tmp_path / "fused"))):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
  assert abs(one["test_loss"] - fused["test_loss"]) < 1e-4
  assert abs(one["test_accuracy"] - fused["test_accuracy"]) <= 2e-4


def test_vmapped_seeds_equal_separate_runs(mnist, tmp_path):
  config = tiny_config("mlp", num_train_steps=30)
  together = multiseed.train_seeds(config, [0, 1, 2])
  for r in together:
    c = tiny_config("mlp", num_train_steps=30, seed=r["seed"])
    alone = train.train_and_evaluate(c, str(tmp_path / f"s{r['seed']}"))
    for a, b in zip(jax.tree.leaves(_params(tmp_path / f"s{r['seed']}")), jax.tree.leaves(r["params"])):
      np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    assert abs(alone["test_loss"] - r["test_loss"]) < 1e-4
    assert abs(alone["test_accuracy"] - r["test_accuracy"]) <= 2e-4
  # Different seeds really are different runs.
  assert len({r["test_loss"] for r in together}) == 3
