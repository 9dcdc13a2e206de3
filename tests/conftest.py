import pytest

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
