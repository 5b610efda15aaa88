"""Weigh the request page: HTML, CSS and JS bytes as sent, and gzip'd (level 6).

By default it starts the app on the embedded local runtime in a temporary folder, makes one
request through the form (2 images), waits for it to finish and weighs its page. With
``--url`` and ``--request-id`` it weighs a page of an app already running.

    python bench/page_weight.py
    python bench/page_weight.py --url http://127.0.0.1:5000 --request-id <id>
"""

import argparse
import gzip
import os
import re
import sys
import tempfile
from urllib.parse import urljoin

import requests

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TIMEOUT = 30
_ASSETS = {
    "css": re.compile(r'<link[^>]+rel="stylesheet"[^>]+href="([^"]+)"'),
    "js": re.compile(r'<script[^>]+src="([^"]+)"'),
    "images": re.compile(r'<img[^>]+src="([^"]+)"'),
}


def gzipped(data):
    return len(gzip.compress(data, compresslevel=6))


def make_request(session, base_url):
    """Submit the form once (no JS, CSRF token from the page); returns the request id."""
    from falweb.testing import wait_until

    form = session.get(f"{base_url}/models/fal-ai/fast-sdxl", timeout=TIMEOUT).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)[1]
    response = session.post(
        f"{base_url}/models/fal-ai/fast-sdxl",
        data={"csrf_token": token, "prompt": "a lighthouse at dusk", "num_images": "2",
              "num_inference_steps": "4", "seed": "42"},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    if response.status_code != 303:
        raise SystemExit(f"submit failed: {response.status_code}\n{response.text[:500]}")
    request_id = response.headers["Location"].rsplit("/", 1)[-1]
    wait_until(lambda: session.get(f"{base_url}/requests/{request_id}/status",
                                   headers={"HX-Request": "true"},
                                   timeout=TIMEOUT).status_code == 286,
               timeout=60, interval=0.1, message=f"request {request_id} to finish")
    return request_id


def weigh(session, base_url, request_id):
    """Rows of (part, url, bytes, gzip bytes) for the request page and what it loads."""
    page_url = f"{base_url}/requests/{request_id}"
    html = session.get(page_url, timeout=TIMEOUT).content
    rows = [("html", page_url, len(html), gzipped(html))]
    text = html.decode()
    for part, pattern in _ASSETS.items():
        for src in pattern.findall(text):
            if src.startswith("data:"):
                continue
            body = session.get(urljoin(page_url, src), timeout=TIMEOUT).content
            rows.append((part, src, len(body), gzipped(body)))
    return rows


def print_table(rows):
    print(f"{'part':<8} {'bytes':>10} {'gzip':>10}  url")
    totals = {}
    for part, url, size, packed in rows:
        print(f"{part:<8} {size:>10,} {packed:>10,}  {url}")
        total = totals.setdefault(part, [0, 0])
        total[0] += size
        total[1] += packed
    print("-" * 60)
    page = [0, 0]
    for part, (size, packed) in totals.items():
        print(f"{part + ' total':<14} {size:>10,} {packed:>10,}")
        if part != "images":
            page[0] += size
            page[1] += packed
    print(f"{'HTML+CSS+JS':<14} {page[0]:>10,} {page[1]:>10,}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="base URL of a running falweb app")
    parser.add_argument("--request-id", help="request to weigh (default: make one)")
    args = parser.parse_args(argv)
    session = requests.Session()
    if args.url:
        base_url = args.url.rstrip("/")
        request_id = args.request_id or make_request(session, base_url)
        print_table(weigh(session, base_url, request_id))
        return
    from falweb.testing import serve_app

    with tempfile.TemporaryDirectory() as folder, serve_app(
        {"FALWEB_INSTANCE_PATH": folder, "FALWEB_BACKEND": "local",
         "FALWEB_LOCAL_STEP_DELAY": 0.0, "FALWEB_LOG_LEVEL": "WARNING"}
    ) as server:
        request_id = make_request(session, server.url)
        print_table(weigh(session, server.url, request_id))


if __name__ == "__main__":
    main()
