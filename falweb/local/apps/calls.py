"""HTTP calls from the runtime to a hosted app's process, which another thread can abort.

``http.client`` rather than ``requests``: aborting a call means shutting its socket down
from another thread (a cancelled request whose app has no ``/cancel`` route, a caller that
hung up, the runtime stopping), and a streamed answer is read as it arrives (``read1``).
"""

import base64
import http.client
import json
import socket

REQUEST_ID_HEADER = "x-fal-request-id"
ENDPOINT_HEADER = "x-fal-endpoint"
NO_RETRY_HEADER = "x-fal-no-retry"


class AppGone(Exception):
    """The connection to the app broke: its process died (or was stopped)."""


class AppNotListening(AppGone):
    """Nothing listens on the app's port (its process just died): the request never
    reached it."""


class AppCall:
    """One request to the app on ``port``; :meth:`send` returns the response, whose body
    the caller reads; :meth:`abort` (any thread) breaks it."""

    def __init__(self, port, method, path, body=None, headers=None, timeout=3600.0):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.method = method
        self.path = path
        self.body = body
        self.headers = headers or {}
        self.aborted = False

    def send(self):
        try:
            self.conn.request(self.method, self.path, body=self.body, headers=self.headers)
            return self.conn.getresponse()
        except ConnectionRefusedError as exc:
            self.conn.close()
            raise AppNotListening(f"{type(exc).__name__}: {exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            raise AppGone(f"{type(exc).__name__}: {exc}") from None

    def read_all(self, response):
        try:
            return response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise AppGone(f"{type(exc).__name__}: {exc}") from None
        finally:
            self.conn.close()

    def abort(self):
        self.aborted = True
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.conn.close()


def json_of(data):
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None


def local_files_as_data_uris(value, base_url, storage, limit):
    """``value`` with every URL of this runtime's own files replaced by a ``data:`` URI.

    fal's SDK refuses to download from loopback and private addresses (its SSRF guard, with
    no setting to lift it), so files callers uploaded to the runtime reach an app as data it
    can read. Files above ``limit`` bytes and URLs of other hosts pass unchanged.
    """
    from falweb.local.storage import NotFound

    prefix = f"{base_url.rstrip('/')}/cdn/files/"

    def convert(item):
        if isinstance(item, dict):
            return {k: convert(v) for k, v in item.items()}
        if isinstance(item, list):
            return [convert(v) for v in item]
        if isinstance(item, str) and item.startswith(prefix):
            file_id = item[len(prefix):].split("/", 1)[0]
            try:
                path, content_type, _, size = storage.get(file_id)
            except NotFound:
                return item
            if size is not None and size > limit:
                return item
            with open(path, "rb") as f:
                encoded = base64.b64encode(f.read()).decode("ascii")
            return f"data:{content_type};base64,{encoded}"
        return item

    return convert(value)
