"""Experiment transforms: what the Dense vs Conv studies do to the data, set in the config.

Two kinds, both pure functions of the config (same config -> same bits):

* `apply(config, ds)` rewrites the host dataset once, before training (research/train.py calls
  it right after `data.load_dataset`). Every random choice has its own seed field, so e.g. the
  pixel permutation is the same for every training seed.

    train_subset       > 0: keep the first N training examples in a fixed random order
                       (train_subset_balanced: N // K of each of the K classes, nested too)
    pixel_permutation  "none" | "train_test" (shuffled pixels, retrained) | "test" (test only:
                       a model trained on normal images scored on shuffled ones)
    random_labels      fraction in [0, 1] of training labels replaced by uniform random classes
                       (Zhang et al. 2017: a replaced label may by chance equal the true one)
    random_pixels      a different pixel permutation for every image (train and test)
    gaussian_images    every image replaced by Gaussian noise with the training set's mean and
                       std (float32 in normalized units, train and test; labels kept)
    validation_size    > 0: hold out this many training examples (a fixed random choice) as
                       the validation split, before any other transform; they get the same
                       image transforms as the training split, and their labels stay true
    canvas_size        > 0: translated MNIST: each digit pasted at a random position of a
                       canvas_size x canvas_size black canvas (train and test);
                       canvas_position 'centre': at its centre (test_shift then moves it
                       without cropping up to the margin)
    clutter_pieces     > 0 (with canvas_size): cluttered translated MNIST: that many
                       clutter_size x clutter_size crops of other digits of the same split
                       pasted at random canvas positions first; the digit goes on top (pixel
                       max), so it is always whole
    test_shift         (dy, dx): test images shifted by a fixed offset, zero filled

  Pixel permutations move whole pixels (all channels together) over the H*W positions.

* `make_augment(config)` returns None or `augment(key, x)`, run inside the jitted train step on
  the normalized float batch: `augment_shift` = k > 0 shifts each image by a random integer
  offset in [-k, k]^2 with zero fill (translation augmentation).
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from research import UserError

PERMUTATIONS = ("none", "train_test", "test")


def _get(config, name, default):
  return config[name] if name in config else default


def _float_images(images: np.ndarray) -> bool:
  return images.dtype != np.uint8


# --- numpy building blocks (host, deterministic) -------------------------------------------


def permute_pixels(images: np.ndarray, perm: np.ndarray) -> np.ndarray:
  """images [N, H, W, C] with pixel positions reordered by `perm` (a permutation of H*W)."""
  n, h, w, c = images.shape
  return images.reshape(n, h * w, c)[:, perm].reshape(n, h, w, c)


def pixel_permutation(image_shape, seed: int) -> np.ndarray:
  h, w = image_shape[:2]
  return np.random.default_rng(seed).permutation(h * w)


def permute_each(images: np.ndarray, seed: int) -> np.ndarray:
  """A different random pixel permutation for every image (Zhang et al.'s 'random pixels')."""
  n, h, w, c = images.shape
  rng = np.random.default_rng(seed)
  perms = np.argsort(rng.random((n, h * w)), axis=1)
  flat = images.reshape(n, h * w, c)
  return np.take_along_axis(flat, perms[:, :, None], axis=1).reshape(n, h, w, c)


def corrupt_labels(labels: np.ndarray, fraction: float, num_classes: int, seed: int) -> np.ndarray:
  """`fraction` of the labels (a fixed random subset) replaced by uniform random classes."""
  if not 0.0 <= fraction <= 1.0:
    raise UserError(f"random_labels must be a fraction in [0, 1], got {fraction}")
  rng = np.random.default_rng(seed)
  n = len(labels)
  chosen = rng.permutation(n)[:int(round(fraction * n))]
  out = labels.copy()
  out[chosen] = rng.integers(0, num_classes, size=len(chosen)).astype(labels.dtype)
  return out


def gaussian_like(train_images: np.ndarray, shapes, seed: int) -> list[np.ndarray]:
  """float32 Gaussian images with the mean and std of `train_images` in normalized units."""
  x = train_images.astype(np.float64)
  if not _float_images(train_images):
    x = x / 255.0
  mean, std = float(x.mean()), float(x.std())
  rng = np.random.default_rng(seed)
  return [(mean + std * rng.standard_normal(s)).astype(np.float32) for s in shapes]


def shift_images(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
  """Every image moved by (dy, dx) pixels (down, right), zero filled; same shape."""
  out = np.zeros_like(images)
  h, w = images.shape[1:3]
  if abs(dy) >= h or abs(dx) >= w:
    return out
  src_y, dst_y = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
  src_x, dst_x = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
  out[:, dst_y, dst_x] = images[:, src_y, src_x]
  return out


def place_on_canvas(images: np.ndarray, size: int, seed: int, centre: bool = False) -> np.ndarray:
  """Each image pasted at a uniformly random position of a size x size zero canvas (`centre`:
  at its centre, the odd pixel of an odd margin after the image)."""
  n, h, w, c = images.shape
  if size < max(h, w):
    raise UserError(f"canvas_size {size} is smaller than the {h}x{w} images")
  if centre:
    ys, xs = np.full(n, (size - h) // 2), np.full(n, (size - w) // 2)
  else:
    rng = np.random.default_rng(seed)
    ys = rng.integers(0, size - h + 1, n)
    xs = rng.integers(0, size - w + 1, n)
  out = np.zeros((n, size, size, c), images.dtype)
  rows = ys[:, None] + np.arange(h)[None, :]  # [n, h]
  cols = xs[:, None] + np.arange(w)[None, :]  # [n, w]
  out[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]] = images
  return out


def add_clutter(canvases: np.ndarray, sources: np.ndarray, pieces: int, size: int,
                seed: int) -> np.ndarray:
  """`canvases` [N, S, S, C] with `pieces` random size x size crops of random `sources` images
  pasted (pixel max) at random positions; deterministic in `seed`. Returns a new array."""
  n, s, _, c = canvases.shape
  m, h, w, _ = sources.shape
  if size > min(h, w) or size > s:
    raise UserError(f"clutter_size {size} does not fit the {h}x{w} digits / {s}x{s} canvas")
  rng = np.random.default_rng(seed)
  out = canvases.copy()
  span = np.arange(size)
  rows_n = np.arange(n)[:, None, None]
  for _ in range(pieces):
    src = rng.integers(0, m, n)
    cy, cx = rng.integers(0, h - size + 1, n), rng.integers(0, w - size + 1, n)
    dy, dx = rng.integers(0, s - size + 1, n), rng.integers(0, s - size + 1, n)
    crops = sources[src[:, None, None], (cy[:, None] + span)[:, :, None],
                    (cx[:, None] + span)[:, None, :]]  # [n, size, size, C]
    at = (rows_n, (dy[:, None] + span)[:, :, None], (dx[:, None] + span)[:, None, :])
    out[at] = np.maximum(out[at], crops)  # one piece per image per pass: no index collides
  return out


def place_on_canvas_cluttered(images: np.ndarray, size: int, pieces: int, piece_size: int,
                              seed: int, centre: bool = False) -> np.ndarray:
  """Cluttered translated digits: clutter from the same images, then each digit on top at a
  random position, or the centre (pixel max with the clutter under it)."""
  n, h, w, c = images.shape
  digits = place_on_canvas(images, size, seed, centre)  # the digit alone, at its position
  if pieces <= 0:
    return digits
  clutter = add_clutter(np.zeros_like(digits), images, pieces, piece_size, seed + 1)
  return np.maximum(clutter, digits)


def balanced_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
  """Sorted indices of `size` examples, size // K of each of the K classes (the first size % K
  classes one more), each class's drawn in one fixed random order: a larger subset holds every
  smaller one."""
  classes = np.unique(labels)
  per, extra = divmod(size, len(classes))
  keep = []
  for i, c in enumerate(classes):
    members = np.flatnonzero(labels == c)
    n = per + (i < extra)
    if n > len(members):
      raise UserError(f"train_subset {size}: class {c} has only {len(members)} examples, "
                      f"{n} needed for a balanced subset")
    keep.append(np.random.default_rng([seed, 2, int(c)]).permutation(members)[:n])
  return np.sort(np.concatenate(keep))


def split_validation(images: np.ndarray, labels: np.ndarray, size: int, seed: int):
  """(train_images, train_labels, val_images, val_labels): `size` examples held out, chosen by a
  fixed permutation of `seed`; both parts keep their original order."""
  n = len(labels)
  if not 0 < size < n:
    raise UserError(f"validation_size {size} must be between 1 and {n - 1} (the training "
                    f"split has {n} examples)")
  held = np.zeros(n, bool)
  held[np.random.default_rng([seed, 9]).permutation(n)[:size]] = True
  return images[~held], labels[~held], images[held], labels[held]


# --- the dataset-level transform ------------------------------------------------------------


def apply(config, ds):
  """`ds` with the config's dataset transforms applied (the same object when there are none)."""
  perm_mode = _get(config, "pixel_permutation", "none")
  if perm_mode not in PERMUTATIONS:
    raise UserError(f"unknown pixel_permutation {perm_mode!r}; choose one of {PERMUTATIONS}")
  subset = int(_get(config, "train_subset", 0))
  fraction = float(_get(config, "random_labels", 0.0))
  random_pixels = bool(_get(config, "random_pixels", False))
  gaussian = bool(_get(config, "gaussian_images", False))
  canvas = int(_get(config, "canvas_size", 0))
  centre = _get(config, "canvas_position", "random") == "centre"
  pieces = int(_get(config, "clutter_pieces", 0))
  piece_size = int(_get(config, "clutter_size", 8))
  val_size = int(_get(config, "validation_size", 0))
  shift = tuple(int(s) for s in _get(config, "test_shift", (0, 0)))
  seed = int(_get(config, "transform_seed", 0))
  if len(shift) != 2:
    raise UserError(f"test_shift must be (dy, dx), got {shift}")
  if pieces < 0 or (pieces > 0 and canvas <= 0):
    raise UserError(f"clutter_pieces {pieces} needs a canvas (canvas_size > 0)")
  if not (perm_mode != "none" or subset > 0 or fraction > 0 or random_pixels or gaussian
          or canvas > 0 or shift != (0, 0) or val_size > 0):
    return ds

  x_tr, y_tr, x_te, y_te = ds.train_images, ds.train_labels, ds.test_images, ds.test_labels
  x_va = y_va = None
  if val_size > 0:  # first: the held-out examples are the same whatever else the config does
    x_tr, y_tr, x_va, y_va = split_validation(x_tr, y_tr, val_size, seed)
  if subset > 0:
    if subset > len(y_tr):
      raise UserError(f"train_subset {subset} exceeds the {len(y_tr)} training examples")
    keep = (balanced_subset(y_tr, subset, seed) if _get(config, "train_subset_balanced", False)
            else np.sort(np.random.default_rng([seed, 1]).permutation(len(y_tr))[:subset]))
    x_tr, y_tr = x_tr[keep], y_tr[keep]
  if canvas > 0:  # before the pixel transforms: the permutation then covers the whole canvas
    place = lambda x, draw: place_on_canvas_cluttered(x, canvas, pieces, piece_size,
                                                      seed=seed * 1000 + draw, centre=centre)
    x_tr, x_te = place(x_tr, 2), place(x_te, 3)
    if x_va is not None:
      x_va = place(x_va, 8)
  if perm_mode != "none":
    perm = pixel_permutation(x_te.shape[1:], int(_get(config, "permutation_seed", 0)))
    x_te = permute_pixels(x_te, perm)
    if perm_mode == "train_test":
      x_tr = permute_pixels(x_tr, perm)
      if x_va is not None:
        x_va = permute_pixels(x_va, perm)
  if random_pixels:
    x_tr = permute_each(x_tr, seed=seed * 1000 + 4)
    x_te = permute_each(x_te, seed=seed * 1000 + 5)
    if x_va is not None:
      x_va = permute_each(x_va, seed=seed * 1000 + 10)
  if gaussian:
    shapes = (x_tr.shape, x_te.shape) + (() if x_va is None else (x_va.shape,))
    x_tr, x_te, *rest = gaussian_like(x_tr, shapes, seed=seed * 1000 + 6)
    x_va = rest[0] if rest else None
  if fraction > 0:
    y_tr = corrupt_labels(y_tr, fraction, ds.num_classes, seed=seed * 1000 + 7)
  if shift != (0, 0):
    x_te = shift_images(x_te, *shift)
  return dataclasses.replace(
      ds, train_images=np.ascontiguousarray(x_tr), train_labels=y_tr,
      test_images=np.ascontiguousarray(x_te), test_labels=y_te,
      val_images=None if x_va is None else np.ascontiguousarray(x_va), val_labels=y_va)


# --- on-device augmentation -----------------------------------------------------------------


def random_shift(key: jax.Array, x: jax.Array, max_shift: int) -> jax.Array:
  """x [B, H, W, C] with each image moved by its own integer offset in [-k, k]^2, zero filled."""
  k = int(max_shift)
  b, h, w, _ = x.shape
  offsets = jax.random.randint(key, (b, 2), 0, 2 * k + 1)
  padded = jnp.pad(x, ((0, 0), (k, k), (k, k), (0, 0)))

  def crop(img, off):
    return jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, img.shape[-1]))

  return jax.vmap(crop)(padded, offsets)


def make_augment(config):
  """None, or `augment(key, x)` for the train step (see the module docstring)."""
  k = int(_get(config, "augment_shift", 0))
  if k < 0:
    raise UserError(f"augment_shift must be >= 0, got {k}")
  if k == 0:
    return None
  return lambda key, x: random_shift(key, x, k)
