"""The fast paths compute what the plain path computes: fused (unrolled) multi-step calls and
Eigen's convolution kernels instead of YNNPACK's."""
import jax
import numpy as np

from conftest import tiny_config
from research import parallel, train


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


def _conv(x, w):
  return jax.lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_cpu_steps_compile_without_ynnpack():
  # The option really reaches XLA: with it the compiled convolution is no YNNPACK fusion.
  x, w = np.ones((8, 13, 13, 32), np.float32), np.ones((3, 3, 32, 64), np.float32)
  options = parallel.compiler_options()
  assert options == {"xla_cpu_experimental_ynn_fusion_type": ""}
  assert parallel.compiler_options(ynnpack=True) is None
  with_ynn = jax.jit(_conv).lower(x, w).compile().as_text()
  without = jax.jit(_conv, compiler_options=options).lower(x, w).compile().as_text()
  assert "__ynn_fusion" in with_ynn and "__ynn_fusion" not in without
  np.testing.assert_allclose(jax.jit(_conv, compiler_options=options)(x, w), _conv(x, w), rtol=1e-6)


def test_eigen_and_ynnpack_kernels_train_the_same_cnn(mnist, tmp_path):
  eigen = train.train_and_evaluate(tiny_config("cnn", num_train_steps=30), str(tmp_path / "eigen"))
  ynn = train.train_and_evaluate(tiny_config("cnn", num_train_steps=30, xla_cpu_ynnpack=True),
                                 str(tmp_path / "ynn"))
  for a, b in zip(jax.tree.leaves(_params(tmp_path / "eigen")), jax.tree.leaves(_params(tmp_path / "ynn"))):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
  assert abs(eigen["test_loss"] - ynn["test_loss"]) < 1e-4
