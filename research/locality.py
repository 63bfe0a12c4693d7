"""How local a dense layer's weights are on its input's grid (an image, or MNIST-1D's sequence).

A dense layer's kernel is [D, U]: D inputs (the H x W x C grid, flattened as the models flatten
it) by U hidden units. For each unit, its weight *mass* at a grid position is the sum over
channels of |w|. Then:

  centroid      the mass-weighted mean position, rounded to the nearest grid position;
  locality(k)   the fraction of the unit's mass inside a k x k window around its centroid: of
                the k x k windows that contain the centroid, the one holding the most mass (so a
                conv's dense matrix, whose unit is a k x k patch containing its own centroid,
                scores exactly 1 at its kernel size). On a 1 x L sequence the window is 1 x k.
  rf size       the effective receptive field: the smallest k with locality(k) >= 0.9.

Units whose weights are all zero (dead under β-LASSO) are left out of the means (`units` says
how many remain).

The chance level is the same measure after each unit's weights are permuted at random among the
grid positions that *vary in the data* (`varying_pixels`). Positions that never vary (MNIST's
border) get zero gradient, so their weights only keep their initial value (SGD) or decay to zero
(β-LASSO); a sparse unit concentrates by chance alone. Permuting among the varying positions only
keeps each unit's weights on the constant positions where they are and its sparsity the same, so
the chance level is what the same weights, without their arrangement, would score.

`unpermute` maps a first layer trained on pixels shuffled by `perm` (research/transforms:
x_shuffled[:, i] = x[:, perm[i]]) back onto the original grid: row i of the trained kernel is
the weight on original pixel perm[i].
"""
import numpy as np

LEVEL = 0.9  # the rf size: the smallest window holding this fraction of a unit's mass
WINDOW = 7  # the default window side (the calibration point's 7 x 7)


def grid_of(image_shape) -> tuple[int, int, int]:
  shape = tuple(int(s) for s in image_shape)
  h, w = shape[:2]
  return h, w, (shape[2] if len(shape) > 2 else 1)


def pixel_mass(kernel, image_shape) -> np.ndarray:
  """|kernel| [H*W*C, U] summed over channels -> [U, H, W]."""
  h, w, c = grid_of(image_shape)
  k = np.abs(np.asarray(kernel, np.float64))
  if k.shape[0] != h * w * c:
    raise ValueError(f"kernel has {k.shape[0]} inputs, the grid {h}x{w}x{c} has {h * w * c}")
  return k.reshape(h, w, c, -1).sum(axis=2).transpose(2, 0, 1)


def centroids(mass: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Rounded mass centroids (rows, cols) [U] of mass [U, H, W]; 0 for units without mass."""
  _, h, w = mass.shape
  total = mass.sum(axis=(1, 2))
  safe = np.where(total > 0, total, 1.0)
  r = (mass.sum(axis=2) * np.arange(h)).sum(axis=1) / safe
  c = (mass.sum(axis=1) * np.arange(w)).sum(axis=1) / safe
  return np.rint(r).astype(int), np.rint(c).astype(int)


def window_fraction(mass: np.ndarray, k: int, centre=None) -> np.ndarray:
  """[U] fraction of each unit's mass in the best k x k window containing its centroid (NaN for
  units without mass)."""
  u, h, w = mass.shape
  kh, kw = min(k, h), min(k, w)
  s = np.zeros((u, h + 1, w + 1))
  s[:, 1:, 1:] = mass.cumsum(axis=1).cumsum(axis=2)
  sums = s[:, kh:, kw:] - s[:, :-kh, kw:] - s[:, kh:, :-kw] + s[:, :-kh, :-kw]  # [U, h-kh+1, w-kw+1]
  r, c = centroids(mass) if centre is None else centre
  a = np.arange(h - kh + 1)[None, :, None]
  b = np.arange(w - kw + 1)[None, None, :]
  r, c = r[:, None, None], c[:, None, None]
  contains = (a <= r) & (r <= a + kh - 1) & (b <= c) & (c <= b + kw - 1)
  best = np.where(contains, sums, -np.inf).max(axis=(1, 2))
  total = mass.sum(axis=(1, 2))
  return np.where(total > 0, best / np.where(total > 0, total, 1.0), np.nan)


def centred_fraction(mass: np.ndarray, k: int) -> np.ndarray:
  """[U] fraction of each unit's mass in the k x k window centred on its rounded centroid (cut
  by the grid's edge): the calibration point's plain definition, which `window_fraction` bounds
  from above (it takes the best window that contains the centroid)."""
  u, h, w = mass.shape
  r, c = centroids(mass)
  rows, cols = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
  inside = ((np.abs(rows - r[:, None, None]) <= (min(k, h) - 1) // 2) &
            (np.abs(cols - c[:, None, None]) <= (min(k, w) - 1) // 2))
  total = mass.sum(axis=(1, 2))
  return np.where(total > 0, (mass * inside).sum(axis=(1, 2)) / np.where(total > 0, total, 1.0),
                  np.nan)


def rf_size(mass: np.ndarray, level: float = LEVEL) -> np.ndarray:
  """[U] the smallest window side k whose locality(k) >= level (NaN for units without mass)."""
  u, h, w = mass.shape
  centre = centroids(mass)
  out = np.full(u, np.nan)
  for k in range(1, max(h, w) + 1):
    todo = np.isnan(out)
    if not todo.any():
      break
    f = window_fraction(mass, k, centre)
    out[todo & (f >= level - 1e-12)] = k
  out[mass.sum(axis=(1, 2)) == 0] = np.nan
  return out


def varying_pixels(images: np.ndarray) -> np.ndarray:
  """bool [H*W*C]: the inputs that take more than one value over `images` [N, ...]."""
  x = np.asarray(images).reshape(len(images), -1)
  return (x.max(axis=0) != x.min(axis=0))


def chance_permutation(kernel, varying=None, seed: int = 0) -> np.ndarray:
  """The kernel with each unit's (column's) weights permuted at random among the `varying` rows
  (all rows when None); the other rows stay where they are."""
  k = np.array(kernel, copy=True)
  rows = np.arange(k.shape[0]) if varying is None else np.flatnonzero(varying)
  k[rows] = np.random.default_rng(seed).permuted(k[rows], axis=0)
  return k


def unpermute(kernel, image_shape, perm) -> np.ndarray:
  """A first-layer kernel trained on pixels shuffled by `perm` mapped back onto the original grid
  (all channels of a pixel move together, as research/transforms.permute_pixels moves them)."""
  h, w, c = grid_of(image_shape)
  k = np.asarray(kernel).reshape(h * w, c, -1)
  out = np.empty_like(k)
  out[np.asarray(perm)] = k
  return out.reshape(h * w * c, -1)


def measure(kernel, image_shape, window: int = WINDOW, varying=None, perm=None,
            seed: int = 0) -> dict:
  """Locality of a first-layer kernel [H*W*C, U]: mean over live units of locality(window) and
  rf size, the same for the chance level, and the fraction of weights left (nonzero). `perm`:
  the pixel permutation the layer was trained under (its weights are un-permuted first);
  `varying`: bool [H*W*C] of the inputs that vary in the (original, unshuffled) data."""
  kernel = np.asarray(kernel, np.float32)
  if perm is not None:
    kernel = unpermute(kernel, image_shape, perm)
  mass = pixel_mass(kernel, image_shape)
  chance = pixel_mass(chance_permutation(kernel, varying, seed), image_shape)
  live = mass.sum(axis=(1, 2)) > 0
  if not live.any():
    nan = float("nan")
    return {"locality": nan, "centred": nan, "chance_centred": nan, "chance": nan, "rf": nan,
            "chance_rf": nan, "units": 0, "weights_left": 0.0}
  return {"locality": float(np.mean(window_fraction(mass[live], window))),
          "centred": float(np.mean(centred_fraction(mass[live], window))),
          "chance_centred": float(np.mean(centred_fraction(chance[live], window))),
          "chance": float(np.mean(window_fraction(chance[live], window))),
          "rf": float(np.mean(rf_size(mass[live]))),
          "chance_rf": float(np.mean(rf_size(chance[live]))),
          "units": int(live.sum()),
          "weights_left": float(np.mean(kernel != 0))}


def first_layer(params) -> tuple[str, np.ndarray]:
  """The name and kernel of a dense net's first layer (`Dense_0`)."""
  return "Dense_0", np.asarray(params["Dense_0"]["kernel"])


def metrics_fn(image_shape, window: int = WINDOW, varying=None, perm=None):
  """params -> {"locality/Dense_0", "chance/Dense_0", "rf/Dense_0", "chance_rf/Dense_0",
  "units/Dense_0", "weights_left/<layer>" for every Dense layer}: what a dense net's run logs at
  each evaluation (split "weights"; research/models.weight_metrics_fn)."""
  def metrics(params) -> dict:
    name, kernel = first_layer(params)
    m = measure(kernel, image_shape, window, varying, perm)
    out = {f"{k}/{name}": v for k, v in m.items()}
    for layer in sorted(params):
      if "kernel" in params[layer]:
        out[f"weights_left/{layer}"] = float(np.mean(np.asarray(params[layer]["kernel"]) != 0))
    return out
  return metrics
