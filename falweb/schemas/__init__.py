"""marshmallow schemas for fal endpoints' inputs and outputs, and the endpoint catalog.

One validation for everyone: the pages (form posts), the client and the local runtime (JSON)
all call :func:`load_input`; errors become fal's 422 ``detail`` with :func:`fal_detail` or
per-field form messages with :func:`form_errors`.
"""

from falweb.schemas.catalog import CATALOG
from falweb.schemas.catalog import Endpoint
from falweb.schemas.catalog import get_endpoint
from falweb.schemas.describe import FieldInfo
from falweb.schemas.describe import describe_fields
from falweb.schemas.errors import fal_detail
from falweb.schemas.errors import form_errors
from falweb.schemas.fields import IMAGE_SIZE_PRESETS
from falweb.schemas.fields import resolve_image_size
from falweb.schemas.loading import dump_input
from falweb.schemas.loading import load_input

__all__ = [
    "CATALOG",
    "IMAGE_SIZE_PRESETS",
    "Endpoint",
    "FieldInfo",
    "describe_fields",
    "dump_input",
    "fal_detail",
    "form_errors",
    "get_endpoint",
    "load_input",
    "resolve_image_size",
]
