"""The scale-out settings, checked at start: a bad value stops the process with a message
that names the setting, and never repeats a password or a key found in it."""

from urllib.parse import urlsplit

DATABASE_SETTING = "FALWEB_DATABASE_URL"
STORAGE_SETTING = "FALWEB_STORAGE_URL"


class SettingError(ValueError):
    """A scale-out setting that cannot be used; the message names it."""


def redact(url):
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


def database_url(config):
    """The PostgreSQL URL of ``FALWEB_DATABASE_URL``, or None when unset (SQLite)."""
    url = (config.get(DATABASE_SETTING) or "").strip()
    if not url:
        return None
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme not in ("postgresql", "postgres"):
        raise SettingError(f"{DATABASE_SETTING} must be a postgresql:// URL, "
                           f"not {redact(url)!r}")
    _require("psycopg", DATABASE_SETTING)
    return url


def storage_location(config):
    """(bucket, prefix) of ``FALWEB_STORAGE_URL`` (``s3://bucket/prefix``), or None when
    unset (files in the instance folder). The prefix is empty or ends with ``/``."""
    url = (config.get(STORAGE_SETTING) or "").strip()
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme != "s3" or not parts.hostname \
            or parts.username or parts.password:
        raise SettingError(f"{STORAGE_SETTING} must look like s3://bucket/prefix (credentials "
                           f"go in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), not "
                           f"{redact(url)!r}")
    _require("boto3", STORAGE_SETTING)
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


def _require(module, setting):
    try:
        __import__(module)
    except ImportError:
        raise SettingError(f"{setting} needs the {module!r} package: "
                           f"pip install 'falweb[scale]'") from None
