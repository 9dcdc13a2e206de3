import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (a red CI must mean a change broke something, not that a new
# random draw found an old hole); `make reliability` and a local HYPOTHESIS_PROFILE=explore widen the search.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(__import__("os").environ.get("HYPOTHESIS_PROFILE", "repeatable"))

try:
    from provider_server import ProviderServer, Reply
except ImportError:  # tests/ imported as a package
    from tests.provider_server import ProviderServer, Reply


@pytest.fixture(scope="session")
def provider_server():
    """One fake OpenAI/Anthropic HTTP server (127.0.0.1, random port) for the whole session."""
    srv = ProviderServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def server(provider_server):
    """The session server, reset to a clean state (no requests, empty script, echo replies)."""
    provider_server.reset()
    provider_server.default = Reply()
    provider_server.reply_fn = None
    yield provider_server
