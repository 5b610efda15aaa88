"""Validate an endpoint's input: the one entry point pages, the client and the runtime share."""

from functools import cache

from marshmallow import EXCLUDE
from marshmallow import RAISE

from falweb.schemas.catalog import Endpoint
from falweb.schemas.catalog import get_endpoint


@cache
def _schema(schema_class, form):
    # Schema instances hold no per-load state, so one per (class, path) is reused.
    return schema_class(form=form)


def load_input(endpoint, data, *, form=False):
    """Validate ``data`` for ``endpoint`` and return the full input, defaults filled in.

    :param endpoint: an :class:`Endpoint`, or an endpoint id or alias.
    :param data: the JSON body (``form=False``), or an HTML form post (``form=True``:
        strings are converted, unknown keys ignored; see :mod:`falweb.schemas.forms`).
    :raise marshmallow.ValidationError: the input is not valid; ``err.messages`` is keyed
        by field (see :func:`fal_detail` and :func:`form_errors`).
    :raise KeyError: ``endpoint`` is not in the catalog.
    """
    if not isinstance(endpoint, Endpoint):
        found = get_endpoint(endpoint)
        if found is None:
            raise KeyError(f"unknown endpoint: {endpoint!r}")
        endpoint = found
    schema = _schema(endpoint.input_schema, form)
    return schema.load(data, unknown=EXCLUDE if form else RAISE)


def dump_input(endpoint, data):
    """Return a validated input as JSON-ready data (absent optional fields stay absent)."""
    if not isinstance(endpoint, Endpoint):
        endpoint = get_endpoint(endpoint)
    return _schema(endpoint.input_schema, False).dump(data)
