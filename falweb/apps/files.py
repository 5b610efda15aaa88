"""``File`` and ``Image`` outputs that serialise exactly as fal's toolkit types do.

JSON: ``{"url", "content_type", "file_name", "file_size"}`` (+ ``"width", "height"`` for an
image), the same keys in the same order as fal's. Creating one uploads the bytes: inside
falweb's runtime to its uploader socket (``FAL_API_SOCKET``, the same protocol fal's SDK
uses), so the URL is the runtime's own file URL; run elsewhere, with no socket, the URL is a
``data:`` URI (as fal's ``in_memory`` repository gives).
"""

import base64
import http.client
import io
import json
import os
import socket
import uuid

from pydantic import BaseModel
from pydantic import Field
from pydantic import model_validator

from falweb.apps.context import current_request_id


class UploadError(Exception):
    """The runtime's uploader refused or failed the upload."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=300):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def upload(data, content_type, file_name):
    """The URL of ``data`` once stored (see the module's docstring)."""
    path = os.environ.get("FAL_API_SOCKET")
    if not path or not os.environ.get("FAL_USE_LOCAL_UPLOADER"):
        return f"data:{content_type};base64,{base64.b64encode(data).decode('ascii')}"
    headers = {"Content-Type": content_type, "X-Fal-File-Name": file_name,
               "Content-Length": str(len(data))}
    request_id = current_request_id()
    if request_id:
        headers["x-fal-request-id"] = request_id
    conn = _UnixConnection(path)
    try:
        conn.request("POST", "/v1/uploads", body=data, headers=headers)
        answer = conn.getresponse()
        body = answer.read()
    except OSError as exc:
        raise UploadError(f"cannot reach the runtime's uploader ({exc})") from None
    finally:
        conn.close()
    if answer.status != 202:
        raise UploadError(f"the runtime's uploader answered {answer.status}: "
                          f"{body[:200].decode('utf-8', 'replace')}")
    return json.loads(body)["file_url"]


_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp",
               "image/gif": "gif", "text/plain": "txt", "application/json": "json"}


class File(BaseModel):
    url: str = Field(description="The URL where the file can be downloaded from.")
    content_type: str | None = Field(None, description="The mime type of the file.",
                                     examples=["image/png"])
    file_name: str | None = Field(None, description="The name of the file. It will be "
                                  "auto-generated if not provided.")
    file_size: int | None = Field(None, description="The size of the file in bytes.")

    @model_validator(mode="before")
    @classmethod
    def _from_url(cls, value):
        # As fal's: an input given as a bare URL string is a File with that URL.
        if isinstance(value, str):
            if not value.startswith(("http://", "https://", "data:")):
                raise ValueError("value must be a valid URL")
            return {"url": value}
        return value

    @classmethod
    def from_bytes(cls, data, content_type="application/octet-stream", file_name=None):
        extension = _EXTENSIONS.get(content_type, "bin")
        file_name = file_name or f"{uuid.uuid4().hex}.{extension}"
        url = upload(bytes(data), content_type, file_name)
        return cls(url=url, content_type=content_type, file_name=file_name,
                   file_size=len(data))


class Image(File):
    width: int | None = Field(None, description="The width of the image in pixels.")
    height: int | None = Field(None, description="The height of the image in pixels.")

    @classmethod
    def from_pil(cls, pil_image, format=None, file_name=None):
        format = (format or pil_image.format or "png").lower()
        buffer = io.BytesIO()
        pil_image.save(buffer, format=format.upper())
        data = buffer.getvalue()
        content_type = f"image/{format}"
        file_name = file_name or f"{uuid.uuid4().hex}.{format}"
        url = upload(data, content_type, file_name)
        return cls(url=url, content_type=content_type, file_name=file_name,
                   file_size=len(data), width=pil_image.width, height=pil_image.height)

    @classmethod
    def from_bytes(cls, data, format="png", file_name=None):
        from PIL import Image as PILImage

        return cls.from_pil(PILImage.open(io.BytesIO(data)), format, file_name)
