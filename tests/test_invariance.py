"""The invariance study's parts: matched MLP widths, the centred canvas, the GAP head, the ink a
shift crops, per-seed drop comparisons (mechanics; the study's numbers: docs/studies/invariance)."""
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from configs import mnist_cnn
from configs.sweeps import invariance as sweep
from research import models, transforms
from research.studies import _layers, invariance
from research.sweeps import grid


def _params(config, shape):
  model = models.create_model(config, 10, block=models.CONV)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, *shape)))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables))


@pytest.mark.parametrize("shape", [(28, 28, 1), (40, 40, 1)])
@pytest.mark.parametrize("model", ["cnn", "cnn_gap"])
def test_cnn_cost_counts_the_parameters_flax_builds(model, shape):
  config = mnist_cnn.get_config()
  config.model = model
  assert _layers.cnn_cost(config, shape)[0] == _params(config, shape)


def test_matched_mlps_have_the_cnns_parameters_and_multiply_adds():
  cnn = mnist_cnn.get_config()
  params, macs = _layers.cnn_cost(cnn, sweep.SHAPE)
  assert (params, macs) == (59_786, 38 * 38 * 9 * 32 + 17 * 17 * 288 * 64 + 4096 * 10)
  mlp = mnist_cnn.get_config()
  mlp.model = "mlp"
  for match, target in (("params", params), ("flops", macs)):
    width = _layers.matched_mlp_width(cnn, sweep.SHAPE, match)
    mlp.mlp_hidden = (width,)
    got = _params(mlp, sweep.SHAPE) if match == "params" else 1600 * width + width * 10
    step = 1611 + 10 if match == "params" else 1610  # what one unit of width adds
    assert abs(got - target) <= step / 2, (match, width, got, target)
  assert sweep.models()["mlp_params"]["mlp_hidden"] == (37,)
  with pytest.raises(ValueError, match="'params' or 'flops'"):
    _layers.matched_mlp_width(cnn, sweep.SHAPE, "width")


def test_the_gap_head_averages_the_last_map_and_tolerates_a_shift_by_the_pooling():
  config = mnist_cnn.get_config()
  config.model = "cnn_gap"
  model = models.create_model(config, 10, block=models.CONV)
  x = jnp.zeros((1, 40, 40, 1)).at[0, 14:26, 14:26, 0].set(1.0)
  variables = model.init(jax.random.PRNGKey(0), x)
  assert variables["params"]["Dense_0"]["kernel"].shape == (64, 10)
  # A 4 px shift is a whole number of both pools' strides: the map moves by one position, and
  # the mean over positions keeps every value away from the zero border.
  moved = jnp.roll(x, 4, axis=2)
  np.testing.assert_allclose(model.apply(variables, x), model.apply(variables, moved), rtol=1e-5)


def test_a_centred_canvas_keeps_the_digit_whole_up_to_its_margin():
  rng = np.random.default_rng(0)
  digits = rng.random((5, 28, 28, 1)).astype(np.float32)  # ink up to the frame's edge
  placed = transforms.place_on_canvas(digits, 40, seed=3, centre=True)
  np.testing.assert_array_equal(placed[:, 6:34, 6:34], digits)
  assert placed.sum() == pytest.approx(digits.sum(), rel=1e-6)
  kept = invariance.ink_kept(digits, 40, (6, 7), sweep.DIRECTIONS)
  assert kept[6] == pytest.approx(1.0) and kept[7] < 1.0


def test_drops_are_compared_per_seed_between_models():
  rows = []
  for model, drop in (("cnn", 0.30), ("cnn_gap", 0.05)):
    for seed, jitter in enumerate((0.0, 0.01, -0.01)):
      rows.append({"model": model, "condition": "centred", "seed": seed, "eval": np.nan,
                   "shift": np.nan, "test_accuracy": 0.98})
      for direction in ("right", "down"):
        rows.append({"model": model, "condition": "centred", "seed": seed,
                     "eval": f"shift 4px {direction}", "shift": 4,
                     "test_accuracy": 0.98 - drop - jitter})
  frame = pd.DataFrame(rows)
  drops = invariance.per_seed_drops(frame, 4)
  assert drops["cnn", "centred"] == pytest.approx({0: 0.30, 1: 0.31, 2: 0.29})
  (c,) = [c for c in invariance.comparisons(frame, [("cnn_gap", "cnn")]) if c["shift"] == 4]
  assert c["diff"] == pytest.approx(-0.25) and c["high"] < 0 and c["verdict"] == "< 0"


def test_the_sweep_expands_every_model_and_training_with_shifted_evaluations():
  spec = grid.load_sweep("configs/sweeps/invariance.py")
  runs = grid.expand(spec, {}, seeds=[0])
  cells = {(r.model, r.condition) for r in runs}
  assert len(cells) == 10 and {m for m, _ in cells} == set(sweep.models())
  assert all(r.config().canvas_size == 40 and r.config().canvas_position == "centre"
             for r in runs)
  assert len(spec["evals"]) == len(sweep.SHIFTS) * len(sweep.DIRECTIONS)


def test_the_verdict_reads_the_study_summary(tmp_path):
  import json
  from research.studies import _answer, verdict
  curve = lambda m, c, s, mean: {"model": m, "condition": c, "shift": s, "mean": mean,
                                 "ci95": 0.01, "std": 0.01, "count": 5}
  summary = {"params": {"cnn": 59786, "cnn_gap": 19466},
             "shift_curves": [curve(m, "centred", s, a) for m, accs in
                              (("cnn", (0.99, 0.60, 0.20)), ("cnn_gap", (0.98, 0.97, 0.90)))
                              for s, a in zip((0, 4, 8), accs)],
             "comparisons": [{"shift": 4, "condition": "centred", "a": "cnn_gap", "b": "cnn",
                              "diff": -0.38, "low": -0.40, "high": -0.36, "verdict": "< 0"}]}
  assert _answer.invariance_sentence(summary) == (
      " On a canvas that keeps the digit whole (40x40, no augmentation), at a 4 px test shift "
      "the CNN with a global-average-pooling head keeps 97.00% and the seed CNN 60.00% (the GAP "
      "head's drop − the seed CNN's: -38.00 pp [-40.00, -36.00]).")
  assert _answer.invariance_sentence(None) == ""
  (tmp_path / "invariance").mkdir()
  (tmp_path / "invariance" / "summary.json").write_text(json.dumps(summary))
  ((order, lines),) = invariance.notes(verdict.Results(str(tmp_path)))
  assert "- centred: cnn (59,786 parameters): 0 px 99.0 ± 1.0, 4 px 60.0 ± 1.0, 8 px 20.0 ± 1.0" \
         in "\n".join(lines)
