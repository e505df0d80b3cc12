"""Model routing: provider prefixes, the default upstream, and a clear error otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from vtai.server.providers.routing import ProviderMissing, Providers
from vtai.server.settings import Settings


@pytest.fixture(autouse=True)
def _no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)


async def test_named_provider_prefix() -> None:
    providers = Providers(Settings(
        providers={"lab": {"base_url": "http://10.0.0.1:9000/v1", "api_key": "k"}},
        upstream_base_url="http://127.0.0.1:1/v1", ollama_probe=False))
    route = await providers.route("lab/qwen2.5")
    assert route.provider == "lab" and route.model == "qwen2.5"
    assert route.upstream is not None and route.upstream.base_url == "http://10.0.0.1:9000/v1"
    ollama = await providers.route("ollama/llama3.2")
    assert ollama.provider == "ollama" and ollama.model == "llama3.2"
    assert ollama.upstream is not None and "11434" in ollama.upstream.base_url


async def test_default_upstream_keeps_slashed_names() -> None:
    providers = Providers(Settings(upstream_base_url="http://127.0.0.1:1/v1",
                                   ollama_probe=False))
    route = await providers.route("meta-llama/Llama-3.1-8B")
    assert route.provider == "default" and route.model == "meta-llama/Llama-3.1-8B"


async def test_openai_env_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:2/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    route = await Providers(Settings(ollama_probe=False)).route("gpt-4o")
    assert route.upstream is not None and route.upstream.base_url == "http://127.0.0.1:2/v1"
    assert route.upstream.headers["Authorization"] == "Bearer sk-x"


async def test_nothing_configured_says_what_to_do() -> None:
    with pytest.raises(ProviderMissing) as err:
        await Providers(Settings(ollama_probe=False)).route("gpt-4o")
    assert "gpt-4o" in str(err.value) and "VTAI_UPSTREAM_BASE_URL" in str(err.value)
    assert "configured provider" not in str(err.value)
    with pytest.raises(ProviderMissing) as err:
        await Providers(Settings(ollama_probe=False, providers={
            "lab": {"base_url": "http://10.0.0.1:9000/v1"}})).route("foo/bar")
    assert "'foo/bar' ('foo' is not a configured provider: known are lab, litellm, " \
        "llamacpp, lmstudio, ollama, vllm)" in str(err.value)


async def test_each_provider_streams_from_its_own_url() -> None:
    providers = Providers(Settings(
        providers={"lab": {"base_url": "http://10.0.0.1:9000/v1/", "api_key": "k"}},
        upstream_base_url="http://127.0.0.1:1/v1", ollama_probe=False,
        upstream_max_retries=5))
    lab = await providers.route("lab/qwen2.5")
    default = await providers.route("gpt-4o")
    assert lab.upstream is not None and default.upstream is not None
    assert lab.upstream.url == "http://10.0.0.1:9000/v1/chat/completions"
    assert lab.upstream.headers["Authorization"] == "Bearer k"
    assert default.upstream.url == "http://127.0.0.1:1/v1/chat/completions"
    assert lab.upstream.max_retries == 5
    assert (await providers.route("lab/other")).upstream is lab.upstream  # made once
    await providers.close()


async def test_prepare_makes_the_default_clients_that_runs_then_use() -> None:
    providers = Providers(Settings(upstream_base_url="http://127.0.0.1:1/v1",
                                   ollama_probe=False))
    providers.prepare()
    made = providers.upstream("default", {"base_url": "unused"})  # (made: not made again)
    route = await providers.route("gpt-4o")
    assert route.upstream is made and made.base_url == "http://127.0.0.1:1/v1"
    await providers.close()


async def test_prepare_with_nothing_configured_makes_no_client() -> None:
    providers = Providers(Settings(ollama_probe=False))
    providers.prepare()
    assert providers.default is None
    with pytest.raises(ProviderMissing):
        await providers.route("gpt-4o")


async def test_default_upstream_only_takes_every_model() -> None:
    """vtai serve --fake-model: the fake model answers ollama/llama3.2 too."""
    providers = Providers(Settings(upstream_base_url="http://127.0.0.1:1/v1",
                                   default_upstream_only=True, ollama_probe=False))
    for model in ("ollama/llama3.2", "vllm/x", "gpt-4o"):
        route = await providers.route(model)
        assert route.provider == "default" and route.model == model


def _serving(at: tuple[str, int] | None, **settings: Any) -> Providers:
    providers = Providers(Settings(ollama_probe=False, **settings))
    providers.serving_at = at  # as create_app sets it
    return providers


async def test_a_provider_at_this_servers_own_address_is_refused() -> None:
    assert (await _serving(None).route("vllm/x")).provider == "vllm"  # not serving: no check
    providers = _serving(("127.0.0.1", 8000))
    with pytest.raises(ProviderMissing) as err:
        await providers.route("vllm/x")
    assert "where this server listens" in str(err.value)
    assert "VTAI_PROVIDERS" in str(err.value)
    assert (await providers.route("ollama/llama3.2")).provider == "ollama"
    assert (await _serving(("127.0.0.1", 8001)).route("vllm/x")).provider == "vllm"


async def test_a_default_upstream_at_this_servers_own_address_is_refused() -> None:
    """OPENAI_BASE_URL set for the apps that call this server, in the server's environment."""
    providers = _serving(("0.0.0.0", 8000), upstream_base_url="http://localhost:8000/v1")
    providers.prepare()  # (start-up goes on: each run says what is wrong)
    with pytest.raises(ProviderMissing) as err:
        await providers.route("gpt-4o")
    assert "where this server listens" in str(err.value)
    assert "VTAI_UPSTREAM_BASE_URL" in str(err.value)
