import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from research import UserError, data, experiment


def test_real_mnist_splits(mnist):
  assert mnist.train_images.shape == (60_000, 28, 28, 1)
  assert mnist.test_images.shape == (10_000, 28, 28, 1)
  assert mnist.train_images.dtype == np.uint8 and mnist.train_labels.dtype == np.int32
  assert mnist.num_classes == 10
  # Real digits, not noise: the class histogram of the MNIST test set.
  counts = np.bincount(mnist.test_labels, minlength=10)
  assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
  assert 30 < mnist.train_images.mean() < 36  # MNIST's mean pixel is ~33.3


def test_unknown_dataset_is_a_user_error(tmp_path):
  with pytest.raises(UserError, match="unknown dataset 'no_such_dataset'"):
    data.load_tfds("no_such_dataset", str(tmp_path))


def test_missing_data_offline_says_how_to_fix(tmp_path, monkeypatch):
  # An empty data dir and no network (a dead proxy stands in for it on a machine that has one):
  # TFDS cannot download, and we say what to do instead of a traceback from inside TFDS.
  for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
    monkeypatch.setenv(var, "http://127.0.0.1:9")
  monkeypatch.delenv("NO_PROXY", raising=False)
  monkeypatch.delenv("no_proxy", raising=False)
  with pytest.raises(UserError, match="downloads/manual"):
    data.load_tfds("mnist", str(tmp_path / "empty"))


def test_batches_are_a_pure_function_of_seed_epoch_step():
  a = experiment.batch_indices(seed=3, start=0, count=25, steps_per_epoch=10, n=105, batch_size=10)
  b = experiment.batch_indices(seed=3, start=13, count=5, steps_per_epoch=10, n=105, batch_size=10)
  np.testing.assert_array_equal(a[13:18], b)  # resuming mid-epoch sees the same batches
  # Each epoch visits 100 distinct examples; epochs are shuffled differently.
  assert len(set(a[:10].ravel())) == 100 and len(set(a[10:20].ravel())) == 100
  assert not np.array_equal(a[:10], a[10:20])
  c = experiment.batch_indices(seed=4, start=0, count=10, steps_per_epoch=10, n=105, batch_size=10)
  assert not np.array_equal(a[:10], c)


def test_eval_indices_count_every_example_once():
  idx, mask = experiment.eval_indices(10_001, 1000)
  assert idx.shape == mask.shape == (11, 1000)
  assert mask.sum() == 10_001
  assert sorted(idx[mask == 1].tolist()) == list(range(10_001))


def test_a_dataset_built_from_the_wrong_archives_is_refused(mnist, monkeypatch):
  # TFDS reuses extracted files by name, and MNIST's and Fashion-MNIST's archives have the same
  # names: a dataset is checked against its own test-split class counts after loading.
  monkeypatch.setitem(data.TEST_CLASS_COUNTS, "mnist", [1000] * 10)  # Fashion-MNIST's counts
  with pytest.raises(UserError, match=r"is not mnist: its test split has class counts \[980, 1135"):
    data.load_tfds.__wrapped__("mnist")


def test_cached_arrays_equal_what_tfds_decodes(mnist):
  import tensorflow_datasets as tfds
  builder = tfds.builder("mnist", data_dir=data._data_dir(""))
  assert os.path.isfile(os.path.join(builder.data_dir, data.CACHE_FILE))
  test = tfds.as_numpy(builder.as_dataset(split="test", batch_size=-1))
  np.testing.assert_array_equal(mnist.test_images, test["image"])
  np.testing.assert_array_equal(mnist.test_labels, test["label"])


def test_one_process_prepares_while_the_others_wait(tmp_path):
  # Another process holds the preparation lock for a few seconds: we wait for it, and give up
  # with one clear line when the wait exceeds its bound.
  lock = tmp_path / ".mnist.prepare.lock"
  holder = subprocess.Popen([sys.executable, "-c", (
      "import fcntl, sys, time\n"
      f"f = open({str(lock)!r}, 'a'); fcntl.flock(f, fcntl.LOCK_EX)\n"
      "print('locked', flush=True); time.sleep(4)\n")], stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(UserError, match="gave up after 1 s waiting for another process"):
      with data._exclusive(str(lock), "preparing mnist", timeout=1):
        pass
    t0 = time.monotonic()
    with data._exclusive(str(lock), "preparing mnist", timeout=60):
      waited = time.monotonic() - t0
    assert 1 < waited < 60  # it waited for the holder's release, then took the lock
  finally:
    holder.kill()
    holder.wait(timeout=30)


def test_a_cut_short_array_cache_is_read_around_and_rewritten(mnist, tmp_path):
  # A process killed while another wrote the cache cannot leave a half file (it is written
  # aside and renamed), but a damaged disk can: the cache is then ignored, not trusted.
  import shutil
  import tensorflow_datasets as tfds
  version_dir = tfds.builder("mnist", data_dir=data._data_dir("")).data_dir
  copy = tmp_path / "mnist" / os.path.basename(version_dir)
  shutil.copytree(version_dir, copy)
  cache = copy / data.CACHE_FILE
  cache.write_bytes(cache.read_bytes()[:100])
  again = data.load_tfds.__wrapped__("mnist", str(tmp_path))
  np.testing.assert_array_equal(again.test_images, mnist.test_images)
  np.testing.assert_array_equal(again.train_labels, mnist.train_labels)
  assert cache.stat().st_size > 50_000_000  # rewritten whole


def test_mnist1d_loads_offline_with_its_papers_shapes():
  from configs import common
  c = common.base_config()
  c.dataset = "mnist1d"
  ds = data.load_dataset(c)
  assert ds.train_images.shape == (4000, 1, 40, 1) and ds.test_images.shape == (1000, 1, 40, 1)
  assert ds.train_images.dtype == np.float32 and ds.num_classes == 10
  assert sorted(set(ds.train_labels.tolist())) == list(range(10))
  assert np.bincount(ds.test_labels, minlength=10).min() > 80  # ~100 of each class
  np.random.seed(123)
  expected = np.random.rand()
  np.random.seed(123)
  data.load_mnist1d.cache_clear()
  again = data.load_mnist1d()  # generated again: the same data, and NumPy's global state kept
  assert np.random.rand() == expected
  np.testing.assert_array_equal(again.test_images, ds.test_images)


def _stage(data_dir, name):
  """Links ../shared/data/NAME's archives into DATA_DIR/downloads/manual/NAME (as env.sh does)."""
  from conftest import ROOT
  source = os.path.join(os.path.dirname(ROOT), "shared", "data", name)
  if not os.path.isdir(source):
    pytest.skip(f"no {source}")
  manual = os.path.join(data_dir, "downloads", "manual", name)
  os.makedirs(manual)
  for f in os.listdir(source):
    if f.endswith(".gz"):
      os.symlink(os.path.join(source, f), os.path.join(manual, f))


def _is_fashion(ds):
  assert np.bincount(ds.test_labels, minlength=10).tolist() == [1000] * 10
  assert ds.train_images.mean() > 60  # Fashion-MNIST's mean pixel is ~72.9, MNIST's ~33.3


def _staged_fashion_dir() -> str:
  """The test run's data dir; skips where Fashion-MNIST's archives are not staged in it."""
  staged = os.environ["TFDS_DATA_DIR"]
  if not os.path.isdir(data.manual_dir(staged, "fashion_mnist")):
    pytest.skip("Fashion-MNIST archives not staged (scripts/env.sh stages them)")
  return staged


def test_fashion_mnist_after_mnist_in_one_data_dir(mnist):
  # The test run's data dir, where the `mnist` fixture prepared MNIST first: Fashion-MNIST's
  # archives have the same file names, and it must still come out as Fashion-MNIST.
  _staged_fashion_dir()
  _is_fashion(data.load_tfds("fashion_mnist"))


@pytest.mark.slow
def test_mnist_after_fashion_mnist_in_a_fresh_data_dir(tmp_path):
  # The other order: a data dir where Fashion-MNIST was prepared first (its prepared and
  # extracted folders copied from the staged data dir, where data.load_tfds left them), then
  # MNIST prepared there from nothing but its archives, offline.
  staged = _staged_fashion_dir()
  data.load_tfds("fashion_mnist")  # prepared in the staged dir if it was not already
  for folder in ("fashion_mnist", os.path.join("downloads", "fashion_mnist")):
    shutil.copytree(os.path.join(staged, folder), tmp_path / folder, symlinks=True)
  _stage(str(tmp_path), "mnist")
  _is_fashion(data.load_tfds("fashion_mnist", str(tmp_path)))
  digits = data.load_tfds("mnist", str(tmp_path))
  assert np.bincount(digits.test_labels, minlength=10).tolist() == data.TEST_CLASS_COUNTS["mnist"]
  assert 30 < digits.train_images.mean() < 36
  assert os.path.isdir(tmp_path / "downloads" / "mnist")  # each extracted in a folder of its own
  assert os.path.isdir(tmp_path / "downloads" / "fashion_mnist")
