"""``POST /rest/tokens/`` (fal-protocol §8.2) and the webhook JWKS."""

from flask import Blueprint
from flask import jsonify

from falweb.local import errors
from falweb.local.http import json_body
from falweb.local.http import runtime

bp = Blueprint("tokens", __name__, url_prefix="/rest")


@bp.post("/tokens/")
def create_token():
    """A JSON string: a signed token for ``allowed_apps`` valid ``token_expiration`` s;
    422 on a bad body."""
    data = json_body()
    if not isinstance(data, dict):
        raise errors.body_error("Expected a JSON object", "type_error.dict")
    apps = data.get("allowed_apps")
    if not isinstance(apps, list) or not apps or not all(isinstance(a, str) and a for a in apps):
        raise errors.validation([{"loc": ["body", "allowed_apps"],
                                  "msg": "must be a non-empty list of app names",
                                  "type": "value_error"}])
    expiration = data.get("token_expiration", 120)
    if isinstance(expiration, bool) or not isinstance(expiration, int) or expiration < 1:
        raise errors.validation([{"loc": ["body", "token_expiration"],
                                  "msg": "must be a positive number of seconds",
                                  "type": "value_error"}])
    return jsonify(runtime().tokens.issue(apps, expiration))


@bp.get("/.well-known/jwks.json")
def jwks():
    """The public keys that verify this runtime's webhook signatures."""
    return jsonify(runtime().webhook_key.jwks())
