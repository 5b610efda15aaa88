"""URLs from results and history reach ``href``/``src`` only when they are http(s) URLs,
``data:image/*`` or this site's own paths: a backend or webhook that answers
``javascript:…`` gets no script onto the request page, the history or the catalog."""

import re
from html.parser import HTMLParser

import pytest

from falweb.presentation import safe_url
from tests.test_pages import HX
from tests.test_pages import add_row

HOSTILE = [
    "javascript:alert(document.domain)",
    " JaVaScRiPt:alert(1)",
    "java\tscript:alert(1)",
    "\x01javascript:alert(1)",
    "vbscript:msgbox(1)",
    "data:text/html,<script>alert(document.domain)</script>",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "blob:https://attacker.test/0b6a",
    "file:///etc/passwd",
]

# What a browser ignores before it reads a URL's scheme.
_IGNORED = re.compile(r"[\t\n\r]")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []
        self.values = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            self.values.append(value or "")
            if name in ("href", "src", "action", "formaction", "poster", "data") and value:
                self.urls.append(value)


def linked_schemes(html):
    """The schemes of every URL in an href/src of ``html``, as a browser reads them, and
    every attribute's value."""
    parser = _Links()
    parser.feed(html)
    schemes = set()
    for url in parser.urls:
        url = _IGNORED.sub("", url).strip("".join(chr(code) for code in range(0x21)))
        match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", url)
        schemes.add(match.group(1).lower() + (":" + url[5:16] if url[:5].lower() == "data:"
                                              else "") if match else "")
    return schemes, parser.values


def assert_only_safe_links(html):
    schemes, values = linked_schemes(html)
    for scheme in schemes:
        assert scheme in ("", "http", "https") or scheme.startswith("data:image/"), scheme
    # No attribute at all holds one (the output JSON may show it, escaped, as text).
    for value in values:
        assert "javascript:" not in _IGNORED.sub("", value).lower(), value


@pytest.mark.parametrize("url", HOSTILE)
def test_safe_url_refuses_what_could_run(url):
    assert safe_url(url) == ""


@pytest.mark.parametrize("url", [
    "https://v3.fal.media/files/a/b.png", "http://127.0.0.1:5000/local/cdn/files/x/y.png",
    "/local/cdn/files/x/y.png", "data:image/png;base64,iVBORw0KGgo=", "DATA:image/jpeg;base64,/9j/",
])
def test_safe_url_keeps_images(url):
    assert safe_url(url) == url


def test_a_hostile_result_puts_no_script_in_the_pages(app, client):
    add_row(app, "rid-js", result={"images": [{"url": url} for url in HOSTILE]
                                   + [{"url": "data:image/png;base64,iVBORw0KGgo="}],
                                   "seed": 1})
    page = client.get("/requests/rid-js")
    assert page.status_code == 200
    assert_only_safe_links(page.text)
    # Each refused image says so; the one real image is still shown.
    assert page.text.count("is not shown") == len(HOSTILE)
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in page.text
    partial = client.get("/requests/rid-js/status", headers=HX)
    assert_only_safe_links(partial.text)


@pytest.mark.parametrize("url", HOSTILE[:6])
def test_a_hostile_thumbnail_puts_no_script_in_history(app, client, url):
    add_row(app, "rid-thumb", result={"images": [{"url": url}]})
    for path in ("/history", "/", "/history/rid-thumb/row"):
        answer = client.get(path, headers=HX if path.startswith("/history/") else {})
        assert answer.status_code in (200, 286), path  # 286: a finished row, polled
        assert "rid-thumb" in answer.text, path
        assert_only_safe_links(answer.text)


def test_a_malformed_result_url_does_not_break_the_page(app, client):
    add_row(app, "rid-bad", result={"images": [{"url": "http://["}, {"url": "https://x:port/"}]})
    assert client.get("/requests/rid-bad").status_code == 200
    assert client.get("/history").status_code == 200
