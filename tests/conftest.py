import os

import pytest

# Unit tests use the small profile and a private cache, never the user's cache.
os.environ.setdefault("ISC_PROFILE", "test")
os.environ.setdefault("ISC_HEADLESS", "1")   # widgets fall back to static figures


@pytest.fixture(scope="session")
def minidisc():
    """The test-profile mini-DISC (built once into the course cache, then reused)."""
    from isc_helpers import data
    from isc_helpers.profile import get_profile
    return data.load_minidisc(get_profile("test"), progress=False)
