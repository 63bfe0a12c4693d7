"""Datasets as uint8 arrays in host memory, loaded once per process.

TFDS prepares the dataset (downloading it, or offline from the original archives placed in
`$TFDS_DATA_DIR/downloads/manual/NAME/`), then each split is read in one go with `batch_size=-1`.
Images stay uint8 (47 MB for MNIST); the train step normalizes them on the device. One process
prepares while the others on the machine wait; a dataset whose archives share file names with
another's (MNIST, Fashion-MNIST) is extracted in a folder of its own and checked after loading.
"""
import contextlib
import dataclasses
import fcntl
import functools
import io
import os
import shutil
import time

import numpy as np
from absl import logging

from research import UserError

# TFDS retries a failed download 10 times with exponential backoff (about 3.5 minutes offline
# before it gives up); a few retries keep a flaky link working and an offline box fast to fail.
DOWNLOAD_RETRIES = 3


@dataclasses.dataclass(frozen=True)
class Dataset:
  name: str
  train_images: np.ndarray  # uint8 [N, H, W, C]
  train_labels: np.ndarray  # int32 [N]
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  # A validation split held out of the training set (transforms.apply, config.validation_size):
  # what learning rates are chosen on; the test split never chooses anything.
  val_images: np.ndarray | None = None
  val_labels: np.ndarray | None = None

  @property
  def image_shape(self):
    return self.train_images.shape[1:]


def _data_dir(data_dir: str) -> str:
  return data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def manual_dir(data_dir: str, name: str) -> str:
  """Where the original archives of `name` lie: downloads/manual/NAME/, else downloads/manual/.

  MNIST and Fashion-MNIST archives have the same file names, so each dataset gets a folder of
  its own (scripts/env.sh stages them so); the shared folder is what TFDS documents.
  """
  own = os.path.join(data_dir, "downloads", "manual", name)
  return own if os.path.isdir(own) else os.path.join(data_dir, "downloads", "manual")


def _offline_help(name: str, data_dir: str) -> str:
  source = {"mnist": "mnist", "fashion_mnist": "fashion_mnist"}.get(name)
  example = (f" (`mkdir -p {data_dir}/downloads/manual/{name} && cp ../shared/data/{source}/*.gz "
             f"{data_dir}/downloads/manual/{name}/`)" if source else "")
  return (f"could not prepare TFDS dataset {name!r} in {data_dir}. Offline, put the original "
          f"archives in {os.path.join(data_dir, 'downloads', 'manual', name)}{example}, or run "
          "once on a machine with internet access")


# The test split's class counts of datasets whose archives share file names: a dataset built
# from the wrong archives (TFDS reuses extracted files by name) fails this check.
TEST_CLASS_COUNTS = {
    "mnist": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
    "fashion_mnist": [1000] * 10,
}

# How long a process waits for another one preparing the same dataset (TFDS takes 20-50 s on
# two cores for MNIST-sized data; a download may take longer).
PREPARE_WAIT_SECONDS = 1800


@contextlib.contextmanager
def _exclusive(path: str, what: str, timeout: float = PREPARE_WAIT_SECONDS):
  """An exclusive lock file: processes on one machine prepare a dataset one at a time."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "a") as f:
    deadline = time.monotonic() + timeout
    logged = False
    while True:
      try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
      except BlockingIOError:
        if time.monotonic() > deadline:
          raise UserError(f"gave up after {timeout:.0f} s waiting for another process to finish "
                          f"{what} (lock {path})") from None
        if not logged:
          logging.info("waiting for another process to finish %s", what)
          logged = True
        time.sleep(0.5)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _prepare(builder, name: str, data_dir: str) -> None:
  """Prepares `name` once (other processes wait), quietly, with one line saying from where.

  Each dataset downloads and extracts into downloads/NAME/, so no dataset reuses another's
  extracted files; what a failed prepare created is removed.
  """
  tfds = _import_tfds()
  from tensorflow_datasets.core.download import downloader
  with _exclusive(os.path.join(data_dir, f".{name}.prepare.lock"), f"preparing {name}"):
    if builder.is_prepared():  # another process did it while we waited
      return
    download_dir = os.path.join(data_dir, "downloads", name)
    manual = manual_dir(data_dir, name)
    created = [p for p in (download_dir, os.path.join(data_dir, name)) if not os.path.exists(p)]
    downloader.MAX_RETRIES = min(downloader.MAX_RETRIES, DOWNLOAD_RETRIES)
    tfds.disable_progress_bar()
    t0 = time.time()
    try:
      with contextlib.redirect_stdout(io.StringIO()):  # TFDS prints banners to stdout
        builder.download_and_prepare(download_dir=download_dir, download_config=(
            tfds.download.DownloadConfig(manual_dir=manual, try_download_gcs=False)))
    except Exception as e:  # offline, missing archives, bad checksums, no space ...
      for path in created:
        shutil.rmtree(path, ignore_errors=True)
      reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
      raise UserError(f"{_offline_help(name, data_dir)} ({type(e).__name__}: {reason})") from None
    archives = os.path.isdir(manual) and any(f.endswith(".gz") for f in os.listdir(manual))
    logging.info("prepared %s in %s from %s in %.0f s", name, builder.data_dir,
                 f"the archives in {manual}" if archives else "a download", time.time() - t0)


def _import_tfds():
  """TFDS, imported only when data is needed (it imports TensorFlow, which is heavy).

  TensorFlow only decodes the prepared files here (uint8 images, int labels), so its oneDNN
  graph rewrites change nothing of ours; turning them off silences the two C++ notices that it
  prints at import whatever TF_CPP_MIN_LOG_LEVEL says. Both are defaults a user can override.
  """
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
  import tensorflow_datasets as tfds
  return tfds


CACHE_FILE = "arrays.npz"


def _read_splits(builder) -> dict:
  """{split: (uint8 images, int32 labels)} of the prepared dataset, through a cache.

  Reading a split through TFDS imports TensorFlow and decodes every image (~10 s for MNIST on
  two cores, paid by every run and every process). The decoded arrays are kept beside TFDS's
  files, in the dataset's version folder, so they go when that folder is prepared again; later
  loads read them in a fraction of a second. A folder that is not writable just has no cache.
  """
  cache = os.path.join(builder.data_dir, CACHE_FILE)
  if os.path.isfile(cache):
    try:
      with np.load(cache) as f:
        return {s: (f[f"{s}_images"], f[f"{s}_labels"]) for s in ("train", "test")}
    except Exception as e:  # cut short (BadZipFile, EOFError), a key missing ...: read TFDS's
      logging.warning("ignoring the unreadable array cache %s (%s)", cache, e)
  tfds = _import_tfds()
  splits = {}
  for split in ("train", "test"):
    arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    splits[split] = (np.asarray(arrays["image"], np.uint8), np.asarray(arrays["label"], np.int32))
  if os.path.isdir(builder.data_dir):  # a local folder (not gs://)
    tmp = f"{cache}.tmp.{os.getpid()}.npz"
    try:
      np.savez(tmp, **{f"{s}_{k}": a for s, (i, l) in splits.items()
                       for k, a in (("images", i), ("labels", l))})
      os.replace(tmp, cache)
    except OSError as e:
      logging.info("no array cache in %s: %s", builder.data_dir, e)
      with contextlib.suppress(OSError):
        os.remove(tmp)
  return splits


@functools.lru_cache(maxsize=4)
def load_tfds(name: str, data_dir: str = "") -> Dataset:
  """Loads `name`'s train and test splits; raises UserError with a fix when it cannot."""
  data_dir = _data_dir(data_dir)
  tfds = _import_tfds()
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(f"unknown dataset {name!r}: neither a TFDS dataset name nor one of this "
                    f"project's built-in datasets ({', '.join(sorted(BUILTIN))}); image datasets "
                    "of TFDS include mnist, fashion_mnist, kmnist, emnist, cifar10") from None
  except PermissionError as e:
    raise UserError(f"TFDS data_dir {data_dir} is not usable: {e}") from None
  if not builder.is_prepared():
    _prepare(builder, name, data_dir)
    # A builder made before the dataset was prepared (here, or by another process while this one
    # waited for the lock) keeps the unprepared info, without splits: read the prepared one.
    builder = tfds.builder(name, data_dir=data_dir)
  info = builder.info
  if "image" not in info.features or "label" not in info.features:
    raise UserError(f"dataset {name!r} has no 'image'/'label' features; use an image "
                    "classification dataset such as mnist, fashion_mnist or cifar10")
  for split in ("train", "test"):
    if split not in info.splits:
      raise UserError(f"dataset {name!r} has no {split!r} split")
  splits = _read_splits(builder)
  num_classes = int(info.features["label"].num_classes)
  expected = TEST_CLASS_COUNTS.get(name)
  counts = np.bincount(splits["test"][1], minlength=num_classes).tolist()
  if expected is not None and counts != expected:
    raise UserError(f"the prepared {name!r} in {builder.data_dir} is not {name}: its test split "
                    f"has class counts {counts}, expected {expected} (built from another "
                    f"dataset's archives?); delete that folder and prepare it again")
  return Dataset(name=name, train_images=splits["train"][0], train_labels=splits["train"][1],
                 test_images=splits["test"][0], test_labels=splits["test"][1],
                 num_classes=num_classes)


@functools.lru_cache(maxsize=2)
def load_breast_cancer(seed: int = 0, test_fraction: float = 0.2) -> Dataset:
  """A real tabular dataset with no spatial structure: sklearn's Wisconsin breast cancer data.

  569 examples of 30 features (it ships with scikit-learn, no download), split into a fixed
  stratified train/test split, standardized with the training split's mean and std. Inputs are
  float32 [N, 1, 30, 1] (one 'row' of 30 values), labels 0/1.
  """
  from sklearn.datasets import load_breast_cancer as sk_load
  bunch = sk_load()
  x, y = bunch.data.astype(np.float64), bunch.target.astype(np.int32)
  rng = np.random.default_rng(seed)
  test = np.zeros(len(y), bool)
  for label in np.unique(y):  # stratified: the same class balance in both splits
    idx = rng.permutation(np.flatnonzero(y == label))
    test[idx[:int(round(test_fraction * len(idx)))]] = True
  mean, std = x[~test].mean(0), x[~test].std(0) + 1e-8
  x = ((x - mean) / std).astype(np.float32).reshape(len(y), 1, -1, 1)
  return Dataset(name="breast_cancer", train_images=x[~test], train_labels=y[~test],
                 test_images=x[test], test_labels=y[test], num_classes=2)


@functools.lru_cache(maxsize=1)
def load_mnist1d() -> Dataset:
  """MNIST-1D (Greydanus 2020): 4,000 train / 1,000 test sequences of length 40, 10 classes.

  Generated offline by the `mnist1d` package with its default arguments (seed 42, about 1-3 s),
  i.e. the dataset of the paper's table. Inputs float32 [N, 1, 40, 1] (zero mean, unit std, as
  the package makes them): the MLP flattens them, the 1-D CNN (cnn1d) slides along the 40.
  """
  try:
    from mnist1d.data import get_dataset_args, make_dataset
  except ImportError:
    raise UserError("dataset 'mnist1d' needs the mnist1d package (pip install mnist1d; "
                    "setup.py installs it)") from None
  state = np.random.get_state()  # make_dataset seeds NumPy's global generator
  try:
    d = make_dataset(get_dataset_args())
  finally:
    np.random.set_state(state)

  def shaped(x):
    return np.asarray(x, np.float32).reshape(len(x), 1, -1, 1)

  return Dataset(name="mnist1d", train_images=shaped(d["x"]),
                 train_labels=np.asarray(d["y"], np.int32), test_images=shaped(d["x_test"]),
                 test_labels=np.asarray(d["y_test"], np.int32), num_classes=10)


# Datasets made here without TFDS (no download, no preparation).
BUILTIN = {"breast_cancer": load_breast_cancer, "mnist1d": load_mnist1d}


def load_dataset(config) -> Dataset:
  """The dataset named by `config.dataset`: one of BUILTIN, else a TFDS name."""
  if config.dataset in BUILTIN:
    return BUILTIN[config.dataset]()
  return load_tfds(config.dataset, config.data_dir)
