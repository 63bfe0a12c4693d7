"""Datasets as uint8 arrays in host memory, loaded once per process.

TFDS prepares the dataset (downloading it, or offline from the original archives placed in
`$TFDS_DATA_DIR/downloads/manual/`), then each split is read in one go with `batch_size=-1`.
Images stay uint8 (47 MB for MNIST); the train step normalizes them on the device.
"""
import dataclasses
import functools
import os

import numpy as np

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

  @property
  def image_shape(self):
    return self.train_images.shape[1:]


def _data_dir(data_dir: str) -> str:
  return data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def _offline_help(name: str, data_dir: str) -> str:
  return (f"could not prepare TFDS dataset {name!r} in {data_dir}. Offline, put the original "
          f"archives in {os.path.join(data_dir, 'downloads', 'manual')} (for MNIST: "
          f"`mkdir -p {data_dir}/downloads/manual && cp ../shared/data/mnist/*.gz "
          f"{data_dir}/downloads/manual/`), or run once on a machine with internet access")


@functools.lru_cache(maxsize=4)
def load_tfds(name: str, data_dir: str = "") -> Dataset:
  """Loads `name`'s train and test splits; raises UserError with a fix when it cannot."""
  data_dir = _data_dir(data_dir)
  import tensorflow_datasets as tfds  # heavy: imported only when data is needed
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise UserError(f"unknown dataset {name!r}: not a TFDS dataset name") from None
  except PermissionError as e:
    raise UserError(f"TFDS data_dir {data_dir} is not usable: {e}") from None
  if not builder.is_prepared():
    from tensorflow_datasets.core.download import downloader
    downloader.MAX_RETRIES = min(downloader.MAX_RETRIES, DOWNLOAD_RETRIES)
    try:
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    except Exception as e:  # offline, missing archives, bad checksums, no space ...
      reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
      raise UserError(f"{_offline_help(name, data_dir)} ({type(e).__name__}: {reason})") from None
  cached = _read_cache(builder.data_dir, name)
  if cached is not None:
    return cached
  info = builder.info
  if "image" not in info.features or "label" not in info.features:
    raise UserError(f"dataset {name!r} has no 'image'/'label' features; use an image "
                    "classification dataset such as mnist, fashion_mnist or cifar10")
  splits = {}
  for split in ("train", "test"):
    if split not in info.splits:
      raise UserError(f"dataset {name!r} has no {split!r} split")
    arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    splits[split] = (np.asarray(arrays["image"], np.uint8), np.asarray(arrays["label"], np.int32))
  ds = Dataset(name=name, train_images=splits["train"][0], train_labels=splits["train"][1],
               test_images=splits["test"][0], test_labels=splits["test"][1],
               num_classes=int(info.features["label"].num_classes))
  _write_cache(builder.data_dir, ds)
  return ds


CACHE_FILE = "arrays.npz"  # the prepared splits as uint8/int32 arrays, beside TFDS's files


def _read_cache(version_dir: str, name: str) -> Dataset | None:
  """The splits from CACHE_FILE: a new process (a sweep's Ray worker) skips TensorFlow's
  reader, ~15 s on a loaded 2-core box for MNIST."""
  path = os.path.join(version_dir, CACHE_FILE)
  try:
    with np.load(path) as f:
      return Dataset(name=name, train_images=f["train_images"], train_labels=f["train_labels"],
                     test_images=f["test_images"], test_labels=f["test_labels"],
                     num_classes=int(f["num_classes"]))
  except Exception:  # absent, cut short (BadZipFile, EOFError ...): read through TFDS
    return None


def _write_cache(version_dir: str, ds: Dataset) -> None:
  path = os.path.join(version_dir, CACHE_FILE)
  tmp = f"{path}.tmp.{os.getpid()}.npz"
  try:
    np.savez(tmp, train_images=ds.train_images, train_labels=ds.train_labels,
             test_images=ds.test_images, test_labels=ds.test_labels,
             num_classes=np.int32(ds.num_classes))
    os.replace(tmp, path)  # atomic: concurrent workers never read half a file
  except OSError:  # a read-only data_dir: no cache, TFDS reads it each time
    if os.path.exists(tmp):
      os.remove(tmp)


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


TABULAR = {"breast_cancer": load_breast_cancer}


def load_dataset(config) -> Dataset:
  """The dataset named by `config.dataset`: a tabular one of TABULAR, else a TFDS name."""
  if config.dataset in TABULAR:
    return TABULAR[config.dataset]()
  return load_tfds(config.dataset, config.data_dir)
