import numpy as np
import pytest

from research import UserError, data, train


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
  a = train.batch_indices(seed=3, start=0, count=25, steps_per_epoch=10, n=105, batch_size=10)
  b = train.batch_indices(seed=3, start=13, count=5, steps_per_epoch=10, n=105, batch_size=10)
  np.testing.assert_array_equal(a[13:18], b)  # resuming mid-epoch sees the same batches
  # Each epoch visits 100 distinct examples; epochs are shuffled differently.
  assert len(set(a[:10].ravel())) == 100 and len(set(a[10:20].ravel())) == 100
  assert not np.array_equal(a[:10], a[10:20])
  c = train.batch_indices(seed=4, start=0, count=10, steps_per_epoch=10, n=105, batch_size=10)
  assert not np.array_equal(a[:10], c)


def test_eval_indices_count_every_example_once():
  idx, mask = train.eval_indices(10_001, 1000)
  assert idx.shape == mask.shape == (11, 1000)
  assert mask.sum() == 10_001
  assert sorted(idx[mask == 1].tolist()) == list(range(10_001))



def test_array_cache_round_trip_and_a_cut_short_file(tmp_path):
  """load_tfds keeps the prepared splits in arrays.npz beside TFDS's files, so a new process
  (a sweep's Ray worker) skips TensorFlow's reader; a broken cache is read around, not trusted."""
  rng = np.random.default_rng(0)
  ds = data.Dataset("toy", rng.integers(0, 255, (6, 4, 4, 1), dtype=np.uint8),
                    np.arange(6, dtype=np.int32), rng.integers(0, 255, (2, 4, 4, 1), dtype=np.uint8),
                    np.array([1, 0], np.int32), num_classes=7)
  data._write_cache(str(tmp_path), ds)
  back = data._read_cache(str(tmp_path), "toy")
  for field in ("train_images", "train_labels", "test_images", "test_labels"):
    np.testing.assert_array_equal(getattr(back, field), getattr(ds, field))
    assert getattr(back, field).dtype == getattr(ds, field).dtype
  assert back.num_classes == 7 and back.name == "toy"
  path = tmp_path / data.CACHE_FILE
  path.write_bytes(path.read_bytes()[:100])
  assert data._read_cache(str(tmp_path), "toy") is None
  assert data._read_cache(str(tmp_path / "absent"), "toy") is None
