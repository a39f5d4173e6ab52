import numpy as np
import pytest

from keras_relaxprune_apps import datasets

CIFAR = datasets._find_archive(datasets.CIFAR10_ARCHIVE)
CAMVID = datasets._find_archive(datasets.CAMVID_ARCHIVE)
needs_cifar = pytest.mark.usefixtures("cifar_available")  # skips, or fails in CI
needs_camvid = pytest.mark.usefixtures("camvid_available")  # skips, or fails in CI


@pytest.fixture
def no_data_anywhere(tmp_path, monkeypatch):
    """Points every search location at empty directories."""
    empty = tmp_path / "empty"
    work = tmp_path / "a" / "b"
    empty.mkdir()
    work.mkdir(parents=True)
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(empty))
    monkeypatch.chdir(work)
    return tmp_path


@needs_cifar
def test_cifar10_subset_shapes_balance_and_pixels():
    (x, y), (xt, yt) = datasets.load_cifar10(train_limit=500, test_limit=200)
    assert x.shape == (500, 32, 32, 3) and x.dtype == np.uint8
    assert xt.shape == (200, 32, 32, 3) and xt.dtype == np.uint8
    assert y.shape == (500,) and yt.shape == (200,)
    assert np.issubdtype(y.dtype, np.integer)
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 50))
    np.testing.assert_array_equal(np.bincount(yt, minlength=10), np.full(10, 20))
    assert 50 < x.mean() < 200 and 50 < xt.mean() < 200
    assert x.std() > 20  # real images, not a constant fill
    # Shuffled, not class-sorted like the archive.
    assert np.any(np.diff(y) < 0)


@needs_cifar
def test_cifar10_uneven_limit_counts_differ_by_one():
    (x, y), _ = datasets.load_cifar10(train_limit=25, test_limit=10)
    counts = np.bincount(y, minlength=10)
    assert len(y) == 25 and counts.max() - counts.min() == 1


@needs_cifar
def test_cifar10_determinism_and_seed_dependence():
    a = datasets.load_cifar10(train_limit=100, test_limit=50, seed=1)
    b = datasets.load_cifar10(train_limit=100, test_limit=50, seed=1)
    c = datasets.load_cifar10(train_limit=100, test_limit=50, seed=2)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0], c[0][0])
    # The cache hands out copies, so editing one result leaves the next intact.
    a[0][0][:] = 0
    d = datasets.load_cifar10(train_limit=100, test_limit=50, seed=1)
    np.testing.assert_array_equal(d[0][0], b[0][0])


@needs_cifar
def test_cifar10_explicit_path_file_and_dir():
    (x1, _), _ = datasets.load_cifar10(path=CIFAR, train_limit=20, test_limit=10)
    (x2, _), _ = datasets.load_cifar10(path=CIFAR.parent, train_limit=20, test_limit=10)
    np.testing.assert_array_equal(x1, x2)


@needs_cifar
def test_tensorflow_decoder_matches_pillow(monkeypatch):
    pytest.importorskip("tensorflow")
    with np.load(CIFAR) as data:
        blob, offsets = data["test_jpeg"], data["test_offsets"]
    pil = datasets._decode_many(blob, offsets, range(8))
    monkeypatch.setattr(datasets, "Image", None)
    tf_out = datasets._decode_many(blob, offsets, range(8))
    assert tf_out.shape == pil.shape and tf_out.dtype == np.uint8
    # Decoders differ only in IDCT rounding.
    assert np.abs(tf_out.astype(int) - pil.astype(int)).mean() < 2


def _fake_cifar10(seed=0):
    rng = np.random.default_rng(seed)

    def split(n):  # keras.datasets shape: labels (N, 1)
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        return x, np.repeat(np.arange(10), n // 10)[:, None]

    return split(40), split(20)


def test_cifar10_falls_back_to_keras_download(no_data_anywhere, monkeypatch):
    monkeypatch.setattr(datasets, "_tfds_installed", lambda: False)
    monkeypatch.setattr(datasets, "_download_cifar10", _fake_cifar10)
    (x, y), (xt, yt) = datasets.load_cifar10(train_limit=20)
    assert x.shape == (20, 32, 32, 3) and y.shape == (20,)
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 2))
    assert xt.shape == (20, 32, 32, 3) and yt.shape == (20,)


def test_cifar10_default_source_order(no_data_anywhere, monkeypatch):
    """No archive: TFDS when installed, else Keras; an explicit source wins."""
    calls = []
    monkeypatch.setattr(datasets, "_tfds_installed", lambda: True)
    monkeypatch.setattr(
        datasets,
        "_load_tfds_cifar10",
        lambda data_dir: calls.append(("tfds", data_dir)) or _fake_cifar10(),
    )
    monkeypatch.setattr(
        datasets, "_download_cifar10", lambda: calls.append(("keras", None)) or _fake_cifar10(1)
    )
    tfds_split = datasets.load_cifar10(train_limit=20, test_limit=10)
    keras_split = datasets.load_cifar10(train_limit=20, test_limit=10, source="keras")
    datasets.load_cifar10(path=no_data_anywhere, source="tfds")
    assert calls == [("tfds", None), ("keras", None), ("tfds", no_data_anywhere)]
    # Same format and subset rule whichever source.
    for (xa, ya), (xb, yb) in zip(tfds_split, keras_split):
        assert xa.shape == xb.shape and xa.dtype == xb.dtype == np.uint8
        assert ya.dtype == yb.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(ya), np.bincount(yb))


@needs_cifar
def test_cifar10_archive_found_wins_unless_told(monkeypatch):
    monkeypatch.setattr(datasets, "_download_cifar10", _fake_cifar10)
    (x, _), _ = datasets.load_cifar10(train_limit=20, test_limit=10)
    assert x.std() > 20  # the archive's real images
    (x, _), _ = datasets.load_cifar10(train_limit=20, test_limit=10, source="keras")
    fake_images = {image.tobytes() for image in _fake_cifar10()[0][0]}
    assert all(image.tobytes() in fake_images for image in x)


def test_cifar10_source_errors(no_data_anywhere):
    with pytest.raises(ValueError, match="'archive', 'tfds', 'keras'"):
        datasets.load_cifar10(source="web")
    with pytest.raises(ValueError, match="takes no `path`"):
        datasets.load_cifar10(path=no_data_anywhere, source="keras")
    with pytest.raises(FileNotFoundError, match="KRP_DATA_DIR") as err:
        datasets.load_cifar10(source="archive")
    assert "cifar10_jpeg.npz" in str(err.value)


def test_cifar10_tfds_runs_on_mock_data(no_data_anywhere, monkeypatch):
    """The real `tfds.load` path, on TFDS' generated stand-in data (offline)."""
    tfds = pytest.importorskip(
        "tensorflow_datasets",
        reason="tensorflow-datasets is not installed: pip install -e '.[data]'",
    )
    with tfds.testing.mock_data(num_examples=100):
        (x, y), (xt, yt) = datasets.load_cifar10(
            source="tfds", train_limit=20, test_limit=10, seed=3
        )
        again = datasets.load_cifar10(source="tfds", train_limit=20, test_limit=10, seed=3)
        other = datasets.load_cifar10(source="tfds", train_limit=20, test_limit=10, seed=4)
        # With no archive and TFDS installed, the default is TFDS.
        default = datasets.load_cifar10(train_limit=20, test_limit=10, seed=3)
        full = datasets.load_cifar10(source="tfds")
    assert x.shape == (20, 32, 32, 3) and x.dtype == np.uint8
    assert xt.shape == (10, 32, 32, 3) and xt.dtype == np.uint8
    assert y.dtype == yt.dtype == np.int64 and y.shape == (20,) and yt.shape == (10,)
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 2))
    np.testing.assert_array_equal(np.bincount(yt, minlength=10), np.ones(10))
    for (xa, ya), (xb, yb), (xc, _yc) in zip(((x, y), (xt, yt)), again, default):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xc)
    assert not np.array_equal(x, other[0][0])
    assert full[0][0].shape == (100, 32, 32, 3) and full[1][1].shape == (100,)
    assert set(np.unique(full[0][1])) <= set(range(10))


def test_explicit_missing_path_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar10_jpeg.npz"):
        datasets.load_cifar10(path=tmp_path / "missing.npz")


def test_camvid_missing_names_env_var(no_data_anywhere):
    with pytest.raises(FileNotFoundError, match="KRP_DATA_DIR") as err:
        datasets.load_camvid()
    assert "camvid_jpeg.npz" in str(err.value)


@needs_camvid
def test_camvid_found_through_env_var(no_data_anywhere, monkeypatch):
    monkeypatch.setenv(datasets.DATA_DIR_ENV, str(CAMVID.parent))
    images, labels = datasets.load_camvid(split="val", limit=2)
    assert images.shape == (2, 360, 480, 3) and labels.shape == (2, 360, 480)


@needs_camvid
def test_camvid_shapes_and_label_range():
    images, labels = datasets.load_camvid(split="train", limit=6)
    assert images.shape == (6, 360, 480, 3) and images.dtype == np.uint8
    assert labels.shape == (6, 360, 480) and labels.dtype == np.uint8
    assert labels.min() >= 0 and labels.max() <= datasets.CAMVID_IGNORE_LABEL
    # Road scenes show several classes, so a decoding mix-up would be visible.
    assert len(np.unique(labels[labels != datasets.CAMVID_IGNORE_LABEL])) >= 5
    # The first train frames are a dusk sequence (mean ~47), so check val.
    val_images, _ = datasets.load_camvid(split="val", limit=6)
    assert 50 < val_images.mean() < 200


@needs_camvid
def test_camvid_resize_keeps_label_ids():
    images, labels = datasets.load_camvid(split="val", limit=3, size=(90, 120))
    assert images.shape == (3, 90, 120, 3) and images.dtype == np.uint8
    assert labels.shape == (3, 90, 120) and labels.dtype == np.uint8
    full = datasets.load_camvid(split="val", limit=3)[1]
    # Nearest-neighbour resizing never invents label values.
    assert set(np.unique(labels)) <= set(np.unique(full))


@needs_camvid
def test_camvid_unknown_split():
    with pytest.raises(ValueError, match="val"):
        datasets.load_camvid(split="test", limit=1)


def test_augment_keeps_shape_dtype_and_crops_windows():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    out = datasets.augment_crop_flip(images, np.random.default_rng(1), flip_prob=0.0)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert not np.array_equal(out, images)
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect")
    for i in range(len(images)):
        crops = [(r, c) for r in range(9) for c in range(9)]
        windows = (padded[i, r : r + 32, c : c + 32] for r, c in crops)
        assert any(np.array_equal(out[i], w) for w in windows)


def test_augment_forced_flip_and_determinism():
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    flipped = datasets.augment_crop_flip(images, 0, pad=0, flip_prob=1.0)
    np.testing.assert_array_equal(flipped, images[:, :, ::-1])
    same = datasets.augment_crop_flip(images, 0, pad=0, flip_prob=0.0)
    np.testing.assert_array_equal(same, images)
    a = datasets.augment_crop_flip(images, np.random.default_rng(5))
    b = datasets.augment_crop_flip(images, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        datasets.augment_crop_flip(images[0], 0)


# --- the real TFDS download path ---------------------------------


class _NetworkReached(Exception):
    """Raised in place of the first HTTP request."""


def test_cifar10_tfds_download_path_gets_as_far_as_the_network(no_data_anywhere, monkeypatch):
    """Without prepared data, `tfds.load` builds the dataset: every module it
    imports on the way (`importlib_resources` for the builder's checksums)
    must be installed by the `data` extra; the first request is stopped."""
    pytest.importorskip(
        "tensorflow_datasets",
        reason="tensorflow-datasets is not installed: pip install -e '.[data]'",
    )
    import requests

    def refuse(self, method, url, *args, **kwargs):
        raise _NetworkReached(url)

    monkeypatch.setattr(requests.Session, "request", refuse)
    with pytest.raises(Exception) as caught:
        datasets.load_cifar10(no_data_anywhere / "tfds", source="tfds")
    chain, error = [], caught.value
    while error is not None:
        chain.append(error)
        error = error.__cause__ or error.__context__
    assert any(isinstance(e, _NetworkReached) for e in chain), repr(caught.value)
    assert not any(isinstance(e, ImportError) for e in chain), repr(caught.value)
