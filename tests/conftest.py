"""Shared test set-up: no test downloads from the internet or touches the user's cache."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def offline_cache(tmp_path_factory):
    """``LDNET_OFFLINE=1`` and an empty ``LDNET_CACHE`` for the whole session (servers and
    subprocesses the tests start inherit both): without them, a command given no weights or
    detector would fetch the catalogue's real files. Download tests lift the first against
    their own 127.0.0.1 server."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LDNET_OFFLINE", "1")
        patch.setenv("LDNET_CACHE", str(tmp_path_factory.mktemp("ldnet-cache")))
        yield
