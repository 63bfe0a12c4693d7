"""research/transforms.py: every experiment transform on small arrays with known answers, and
the two hooks in research/train.py (a short real run on sklearn's breast cancer table)."""
import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from research import data, steps, transforms


def _dataset(n_train=50, n_test=20, h=6, w=5, c=1, seed=0):
  rng = np.random.default_rng(seed)
  return data.Dataset(
      name="toy", train_images=rng.integers(0, 256, (n_train, h, w, c), dtype=np.uint8),
      train_labels=rng.integers(0, 10, n_train).astype(np.int32),
      test_images=rng.integers(0, 256, (n_test, h, w, c), dtype=np.uint8),
      test_labels=rng.integers(0, 10, n_test).astype(np.int32), num_classes=10)


def _config(**kw):
  from configs import common
  c = common.base_config()
  for k, v in kw.items():
    c[k] = v
  return c


def test_defaults_change_nothing():
  ds = _dataset()
  assert transforms.apply(_config(), ds) is ds
  assert transforms.make_augment(_config()) is None
  # A config from before the transform fields existed also passes through.
  assert transforms.apply(ml_collections.ConfigDict({"dataset": "toy"}), ds) is ds


def test_fixed_permutation_on_train_and_test():
  ds = _dataset(c=3)
  out = transforms.apply(_config(pixel_permutation="train_test", permutation_seed=7), ds)
  perm = transforms.pixel_permutation((6, 5), 7)
  assert sorted(perm) == list(range(30)) and not np.array_equal(perm, np.arange(30))
  for split in ("train", "test"):
    x, y = getattr(ds, f"{split}_images"), getattr(out, f"{split}_images")
    flat_x, flat_y = x.reshape(len(x), 30, 3), y.reshape(len(y), 30, 3)
    np.testing.assert_array_equal(flat_y, flat_x[:, perm])  # whole pixels move, channels together
  np.testing.assert_array_equal(out.train_labels, ds.train_labels)
  again = transforms.apply(_config(pixel_permutation="train_test", permutation_seed=7), ds)
  np.testing.assert_array_equal(again.train_images, out.train_images)  # deterministic
  other = transforms.apply(_config(pixel_permutation="train_test", permutation_seed=8), ds)
  assert not np.array_equal(other.train_images, out.train_images)
  # The permutation does not depend on the training seed.
  seeded = transforms.apply(_config(pixel_permutation="train_test", permutation_seed=7, seed=3), ds)
  np.testing.assert_array_equal(seeded.test_images, out.test_images)


def test_test_only_permutation_leaves_training_data():
  ds = _dataset()
  both = transforms.apply(_config(pixel_permutation="train_test"), ds)
  test_only = transforms.apply(_config(pixel_permutation="test"), ds)
  np.testing.assert_array_equal(test_only.train_images, ds.train_images)
  np.testing.assert_array_equal(test_only.test_images, both.test_images)


def test_random_labels_fraction():
  labels = np.arange(10000, dtype=np.int32) % 10
  out = transforms.corrupt_labels(labels, 0.5, 10, seed=0)
  changed = (out != labels).mean()
  # Half are redrawn uniformly; 1/10 of those land on the true class by chance: 45% change.
  assert abs(changed - 0.45) < 0.02
  assert out.min() >= 0 and out.max() <= 9 and out.dtype == labels.dtype
  np.testing.assert_array_equal(transforms.corrupt_labels(labels, 0.0, 10, 0), labels)
  ds = _dataset(n_train=2000)
  full = transforms.apply(_config(random_labels=1.0), ds)
  assert abs((full.train_labels != ds.train_labels).mean() - 0.9) < 0.03
  np.testing.assert_array_equal(full.test_labels, ds.test_labels)  # test labels stay true
  np.testing.assert_array_equal(full.train_images, ds.train_images)


def test_random_pixels_is_a_different_permutation_per_image():
  ds = _dataset(n_train=100)
  out = transforms.apply(_config(random_pixels=True), ds)
  x, y = ds.train_images.reshape(100, -1), out.train_images.reshape(100, -1)
  np.testing.assert_array_equal(np.sort(x, 1), np.sort(y, 1))  # same pixel values per image
  # Recover each image's permutation from a distinct-valued probe: they differ across images.
  probe = np.arange(30, dtype=np.float32).reshape(1, 6, 5, 1).repeat(5, 0)
  perms = transforms.permute_each(probe, seed=1).reshape(5, 30)
  assert len({tuple(p) for p in perms}) == 5
  assert not np.array_equal(out.test_images, ds.test_images)


def test_gaussian_images_match_data_mean_and_std():
  ds = _dataset(n_train=400, h=28, w=28)
  out = transforms.apply(_config(gaussian_images=True), ds)
  assert out.train_images.dtype == np.float32 and out.train_images.shape == ds.train_images.shape
  assert out.test_images.shape == ds.test_images.shape
  ref = ds.train_images / 255.0
  assert abs(out.train_images.mean() - ref.mean()) < 2e-3
  assert abs(out.train_images.std() - ref.std()) < 2e-3
  # Float images go through the step's normalize unchanged.
  np.testing.assert_array_equal(np.asarray(steps.normalize(jnp.asarray(out.test_images[:3]))),
                                out.test_images[:3])


def test_normalize_uint8_path_is_unchanged():
  x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
  old = jnp.asarray(x).astype(jnp.float32) / 255.0
  np.testing.assert_array_equal(np.asarray(steps.normalize(jnp.asarray(x))), np.asarray(old))


def test_shift_images_zero_fills():
  x = np.arange(1, 26, dtype=np.uint8).reshape(1, 5, 5, 1)
  right = transforms.shift_images(x, 0, 2)
  np.testing.assert_array_equal(right[0, :, 2:, 0], x[0, :, :3, 0])
  assert (right[0, :, :2] == 0).all()
  up = transforms.shift_images(x, -1, 0)
  np.testing.assert_array_equal(up[0, :4, :, 0], x[0, 1:, :, 0])
  assert (up[0, 4] == 0).all()
  assert (transforms.shift_images(x, 5, 0) == 0).all()
  ds = _dataset()
  out = transforms.apply(_config(test_shift=(1, -2)), ds)
  np.testing.assert_array_equal(out.train_images, ds.train_images)
  np.testing.assert_array_equal(out.test_images, transforms.shift_images(ds.test_images, 1, -2))


def test_canvas_places_each_digit_whole():
  ds = _dataset(n_train=30, n_test=10, h=6, w=6)
  out = transforms.apply(_config(canvas_size=15), ds)
  assert out.train_images.shape == (30, 15, 15, 1) and out.test_images.shape == (10, 15, 15, 1)
  positions = set()
  for src, dst in zip(ds.train_images, out.train_images):
    assert dst.sum(dtype=np.int64) == src.sum(dtype=np.int64)
    hits = [(y, x) for y in range(10) for x in range(10)
            if np.array_equal(dst[y:y + 6, x:x + 6], src)]
    assert hits
    positions.add(hits[0])
  assert len(positions) > 5  # random positions, not one
  with pytest.raises(Exception, match="canvas_size"):
    transforms.apply(_config(canvas_size=4), ds)


def test_cluttered_canvas_is_deterministic_and_keeps_the_digit_whole():
  ds = _dataset(n_train=40, n_test=10, h=8, w=8)
  cfg = _config(canvas_size=20, clutter_pieces=4, clutter_size=4)
  out = transforms.apply(cfg, ds)
  again = transforms.apply(cfg, ds)
  np.testing.assert_array_equal(out.train_images, again.train_images)
  np.testing.assert_array_equal(out.test_images, again.test_images)
  plain = transforms.apply(_config(canvas_size=20), ds)  # the same positions without clutter
  assert out.train_images.shape == (40, 20, 20, 1)
  for digit, canvas, src in zip(plain.train_images, out.train_images, ds.train_images):
    (y, x), = [(y, x) for y in range(13) for x in range(13)
               if np.array_equal(digit[y:y + 8, x:x + 8], src)]
    # Whole: every digit pixel is there (clutter under it can only raise a pixel, never hide it).
    assert (canvas[y:y + 8, x:x + 8] >= src).all()
    # Clutter was added: the canvas outside the digit's box is not all black any more.
    outside = canvas.copy()
    outside[y:y + 8, x:x + 8] = 0
    assert outside.any()
  # Clutter comes from the split's own digits: the canvas carries more ink than the digit.
  assert out.train_images.sum(dtype=np.int64) > plain.train_images.sum(dtype=np.int64)
  other = transforms.apply(_config(canvas_size=20, clutter_pieces=4, clutter_size=4,
                                   transform_seed=1), ds)
  assert not np.array_equal(other.train_images, out.train_images)
  with pytest.raises(Exception, match="needs a canvas"):
    transforms.apply(_config(clutter_pieces=4), ds)


def test_validation_split_never_overlaps_training():
  ds = _dataset(n_train=50, n_test=20)
  ids = np.arange(50, dtype=np.uint8)  # each training image carries its index in every pixel
  ds = dataclasses.replace(ds, train_images=np.broadcast_to(
      ids[:, None, None, None], ds.train_images.shape).copy())
  out = transforms.apply(_config(validation_size=10), ds)
  train_ids = set(out.train_images[:, 0, 0, 0].tolist())
  val_ids = set(out.val_images[:, 0, 0, 0].tolist())
  assert len(val_ids) == 10 and len(train_ids) == 40
  assert not train_ids & val_ids and train_ids | val_ids == set(range(50))
  np.testing.assert_array_equal(out.val_labels, ds.train_labels[sorted(val_ids)])
  np.testing.assert_array_equal(out.test_images, ds.test_images)  # the test split is untouched
  # The same examples are held out whatever the training seed; a subset comes from the rest.
  sub = transforms.apply(_config(validation_size=10, train_subset=20, seed=5), ds)
  assert set(sub.val_images[:, 0, 0, 0].tolist()) == val_ids
  assert not set(sub.train_images[:, 0, 0, 0].tolist()) & val_ids
  # The validation images get the training split's image transforms, labels stay true.
  perm = transforms.apply(_config(validation_size=10, pixel_permutation="train_test",
                                  random_labels=1.0), ds)
  np.testing.assert_array_equal(perm.val_labels, out.val_labels)
  np.testing.assert_array_equal(
      perm.val_images, transforms.permute_pixels(out.val_images, transforms.pixel_permutation(
          (6, 5), 0)))
  with pytest.raises(Exception, match="validation_size"):
    transforms.apply(_config(validation_size=50), ds)


def test_train_subset_is_fixed_and_sized():
  ds = _dataset(n_train=50)
  a = transforms.apply(_config(train_subset=20, seed=1), ds)
  b = transforms.apply(_config(train_subset=20, seed=2), ds)
  assert len(a.train_labels) == 20 and len(a.test_labels) == 20
  np.testing.assert_array_equal(a.train_images, b.train_images)  # not tied to the run's seed


def test_random_shift_augmentation():
  x = jnp.asarray(np.random.default_rng(0).random((64, 12, 12, 1)), jnp.float32)
  x = x.at[:, :2].set(0).at[:, -2:].set(0).at[:, :, :2].set(0).at[:, :, -2:].set(0)
  augment = transforms.make_augment(_config(augment_shift=2))
  y = np.asarray(augment(jax.random.PRNGKey(0), x))
  np.testing.assert_array_equal(y, np.asarray(augment(jax.random.PRNGKey(0), x)))
  offsets = set()
  for xi, yi in zip(np.asarray(x), y):
    found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
             if np.array_equal(transforms.shift_images(xi[None], dy, dx)[0], yi)]
    assert found, "every augmented image is its input shifted by at most 2 px"
    offsets.add(found[0])
  assert len(offsets) > 10  # each image draws its own offset


def test_hooks_in_train_and_evaluate(tmp_path):
  """The train.py hooks: a test-only permutation changes only the test score; augmentation
  changes training. Real data: sklearn's breast cancer table (ships with scikit-learn)."""
  from configs import mnist_mlp
  from research import train

  def run(name, **kw):
    c = mnist_mlp.get_config()
    c.update(dict(dataset="breast_cancer", model="mlp", mlp_hidden=(16,), batch_size=32,
                  num_train_steps=60, learning_rate=5e-3, steps_per_call=10, log_every_steps=10, eval_every_epochs=0,
                  checkpoint_every_steps=1000, parallelism="single", eval_train=True))
    c.update(kw)
    return train.train_and_evaluate(c, str(tmp_path / name))

  base = run("base")
  assert "validation_accuracy" not in base
  held = run("held_out", validation_size=100, eval_every_epochs=1)
  assert held["validation_count"] == 100 and 0.8 < held["validation_accuracy"] <= 1
  from research.sweeps import report
  curve = report.read_metrics(str(tmp_path / "held_out"), "validation")
  assert [m["step"] for m in curve][-1] == 60 and len(curve) >= 2  # every epoch and the end
  test_only = run("test_only", pixel_permutation="test")
  # Same training data, same seed: identical params, so identical training accuracy ...
  assert test_only["train_accuracy"] == base["train_accuracy"]
  assert test_only["train_loss"] == pytest.approx(base["train_loss"], abs=1e-6)
  # ... but the test columns are shuffled, so the test score changes.
  assert test_only["test_loss"] != pytest.approx(base["test_loss"], abs=1e-4)
  assert base["test_accuracy"] > 0.85
  # The augmentation hook: random 1-column shifts of every batch change what is learned.
  augmented = run("augmented", augment_shift=1)
  assert augmented["train_loss"] != pytest.approx(base["train_loss"], abs=1e-4)
  with pytest.raises(Exception, match="pixel_permutation"):
    run("bad", pixel_permutation="sideways")
