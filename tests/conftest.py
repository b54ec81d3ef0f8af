import os

import pytest

# Unit tests use the small profile and a private cache, never the user's cache.
os.environ.setdefault("ISC_PROFILE", "test")
os.environ.setdefault("ISC_HEADLESS", "1")   # widgets fall back to static figures


@pytest.fixture(scope="session")
def mini():
    """The test-profile mini-DISC (built once into the course cache, then reused)."""
    from isc_helpers.datasets import minidisc
    from isc_helpers.core.profile import get_profile
    return minidisc.load_minidisc(get_profile("test"), progress=False)


@pytest.fixture(scope="module")
def photo():
    """One pool photo (the edit tests of both generators)."""
    from isc_helpers.core import images
    from isc_helpers.datasets import dataset
    return images.load_image(dataset.load_pool().files("photos")[0])


@pytest.fixture(scope="module")
def assets():
    """A few overlay cut-outs and background photos for edits that paste images."""
    from isc_helpers.datasets import dataset, edits
    pool = dataset.load_pool()
    return edits.EditAssets(overlays=pool.files("overlays")[:5], backgrounds=pool.files("photos")[-5:])
