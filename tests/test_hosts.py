"""hosts.py: the one map from canonical fal URLs to where they really are."""

import pytest

from falweb.hosts import Hosts

LOCAL = "http://127.0.0.1:5000/local"


@pytest.mark.parametrize("canonical,local", [
    ("https://queue.fal.run/fal-ai/flux/dev", f"{LOCAL}/queue/fal-ai/flux/dev"),
    ("https://queue.fal.run/fal-ai/flux/requests/R/status?logs=1",
     f"{LOCAL}/queue/fal-ai/flux/requests/R/status?logs=1"),
    ("https://fal.run/fal-ai/x/stream", f"{LOCAL}/run/fal-ai/x/stream"),
    ("wss://fal.run/123/app/realtime?fal_jwt_token=T",
     "ws://127.0.0.1:5000/local/run/123/app/realtime?fal_jwt_token=T"),
    ("https://rest.fal.ai/tokens/", f"{LOCAL}/rest/tokens/"),
    ("https://rest.alpha.fal.ai/storage/upload/initiate",
     f"{LOCAL}/rest/storage/upload/initiate"),
    ("https://v3.fal.media/files/upload", f"{LOCAL}/cdn/files/upload"),
])
def test_local_map(canonical, local):
    assert Hosts(LOCAL).resolve(canonical) == local
    assert Hosts(None).resolve(canonical) == canonical  # fal: the identity


def test_https_base_gives_wss():
    assert Hosts("https://gpu.example/local").realtime("/a/b/realtime") == \
        "wss://gpu.example/local/run/a/b/realtime"


@pytest.mark.parametrize("url", [
    "https://evil.com/fal-ai/x", "https://fal.run.evil.com/x", "https://evilfal.run/x",
    "https://fal.run@evil.com/x", "https://user@fal.run/x", "https://fal.run:8443/x",
    "http://fal.run/x", "https://queue.fal.run//evil.com/x", "ftp://fal.run/x", "",
])
def test_non_fal_urls_are_refused(url):
    with pytest.raises(ValueError):
        Hosts(LOCAL).resolve(url)
    with pytest.raises(ValueError):
        Hosts(None).resolve(url)


def test_canonical_inverts_resolve():
    hosts = Hosts(LOCAL)
    for canonical in ("https://queue.fal.run/a/b", "https://fal.run/a/b",
                      "https://rest.fal.ai/tokens/", "https://v3.fal.media/files/x"):
        assert hosts.canonical(hosts.resolve(canonical)) == canonical
    assert hosts.canonical("https://elsewhere.example/x") == "https://elsewhere.example/x"
