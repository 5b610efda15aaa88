"""Every falweb setting, with its default and what it means.

Values come, lowest first, from these defaults, the instance folder's ``config.py``,
``FALWEB_*`` environment variables (parsed to the default's type) and the ``test_config``
given to :func:`falweb.create_app`. ``FAL_KEY`` / ``FAL_KEY_ID`` / ``FAL_KEY_SECRET`` are
read under fal's own names. The README's configuration table mirrors this module.
"""

import json
import os

DEFAULTS = {
    # "fal", "local", or "" to choose: fal when a key is configured, local otherwise.
    "FALWEB_BACKEND": "",
    # Base URL of a local runtime running elsewhere (e.g. http://gpu-box:8100); empty = embedded.
    "FALWEB_LOCAL_URL": "",
    # URL that the local runtime puts in its answers (status_url, file URLs) when callers
    # reach it through a reverse proxy; empty = the URL each caller used. Embedded, it
    # defaults to FALWEB_PUBLIC_URL + "/local".
    "FALWEB_LOCAL_PUBLIC_URL": "",
    # Engine of the local runtime: "preview" (synthetic images) or "diffusers" (real SD weights).
    "FALWEB_LOCAL_ENGINE": "preview",
    # diffusers engine: a save_pretrained folder or an HF repo id in the local cache (no downloads).
    "FALWEB_LOCAL_MODEL": "",
    # diffusers engine: torch device ("cpu", "cuda", "cuda:1"); empty = cuda if available, else cpu.
    "FALWEB_LOCAL_DEVICE": "",
    # Seconds the preview engine spends on each inference step (one log line each).
    "FALWEB_LOCAL_STEP_DELAY": 0.02,
    # Worker threads per process that run queued jobs in the local runtime.
    "FALWEB_LOCAL_WORKERS": 2,
    # Seconds a worker's claim on a job lasts without a heartbeat before another may take it.
    "FALWEB_LOCAL_LEASE_SECONDS": 30.0,
    # Largest file the local runtime's storage accepts, in bytes (answers 413 above it).
    "FALWEB_LOCAL_MAX_UPLOAD_BYTES": 1024 * 1024 * 1024,
    # Largest JSON request (an input with data URIs, say) the local runtime reads, in bytes.
    "FALWEB_LOCAL_MAX_REQUEST_BYTES": 64 * 1024 * 1024,
    # Largest input file the local runtime fetches from a public http(s) URL, in bytes.
    "FALWEB_LOCAL_MAX_FETCH_BYTES": 20 * 1024 * 1024,
    # Most pixels an input image may have (checked from its header; also Pillow's MAX_IMAGE_PIXELS).
    "FALWEB_LOCAL_MAX_INPUT_PIXELS": 4096 * 4096,
    # Most output pixels one request may ask for: width × height × num_images.
    "FALWEB_LOCAL_MAX_OUTPUT_PIXELS": 2048 * 2048 * 8,
    # Longest lifetime, in seconds, of a token issued by the local runtime's /tokens/.
    "FALWEB_LOCAL_MAX_TOKEN_SECONDS": 3600,
    # Origins that may call the local runtime's API from a browser ("*" for any); [] = none.
    "FALWEB_LOCAL_CORS_ORIGINS": [],
    # Host headers the local runtime answers besides its own address and loopback names
    # ("name" or "name:port", "*" for any); a request to another one gets 400.
    "FALWEB_LOCAL_ALLOWED_HOSTS": [],
    # URL prefixes that webhooks may go to although they are local or private addresses.
    "FALWEB_LOCAL_WEBHOOK_ALLOWED_URLS": [],
    # Seconds a webhook receiver has to answer one delivery before it is tried again.
    "FALWEB_LOCAL_WEBHOOK_TIMEOUT": 15.0,
    # Seconds stored files (uploads and outputs) are kept; 0 = for ever.
    "FALWEB_LOCAL_FILE_RETENTION_SECONDS": 7 * 24 * 3600,
    # Seconds finished jobs (with their logs and delivered webhooks) are kept; 0 = for ever.
    "FALWEB_LOCAL_JOB_RETENTION_SECONDS": 7 * 24 * 3600,
    # Most bytes of stored files in all (answers 507 above); 0 = no cap.
    "FALWEB_LOCAL_MAX_STORAGE_BYTES": 10 * 1024 * 1024 * 1024,
    # diffusers engine: folders LoRA and embedding paths must be in; [] = <instance>/weights.
    "FALWEB_LOCAL_WEIGHTS_DIRS": [],
    # Your own apps the local runtime hosts: FILE::Class entries (README, "Your own apps").
    "FALWEB_APPS": [],
    # The virtualenv fal apps run in (never falweb's own); `make test` creates .venv-falapps.
    "FALWEB_APPS_VENV": ".venv-falapps",
    # Seconds an app may take to answer /health after it starts (setup, loading weights).
    "FALWEB_APPS_STARTUP_SECONDS": 300.0,
    # Folder for the SQLite queue, history, uploads and keys; default: Flask's instance folder.
    "FALWEB_INSTANCE_PATH": "",
    "FALWEB_DATABASE_URL": "",
    "FALWEB_STORAGE_URL": "",
    "FALWEB_S3_ENDPOINT_URL": "",
    "FALWEB_S3_REGION": "",
    "FALWEB_STORAGE_DOWNLOADS": "redirect",
    # Flask secret for sessions and CSRF; empty = a random one kept in the instance folder.
    "FALWEB_SECRET_KEY": "",
    # Seconds between status polls made by the pages and the client's subscribe().
    "FALWEB_POLL_INTERVAL": 0.5,
    # Timeout, in seconds, of every HTTP call falweb makes to its backend.
    "FALWEB_HTTP_TIMEOUT": 60.0,
    # Seconds a copy of fal's published OpenAPI document for an endpoint is used before it is
    # fetched again (fal backend; offline, the older copy stays in use with a note).
    "FALWEB_OPENAPI_TTL": 24 * 3600,
    # Where fal publishes endpoint documents (?endpoint_id=<id> is added).
    "FALWEB_OPENAPI_URL": "https://fal.ai/api/openapi/queue/openapi.json",
    # Log level of falweb's loggers (stdout).
    "FALWEB_LOG_LEVEL": "INFO",
    # Public URL of this app (e.g. https://gen.example.com) where fal can deliver webhooks;
    # empty = no webhooks from fal (the embedded runtime always delivers to the app itself).
    "FALWEB_PUBLIC_URL": "",
    # The URL at which this app reaches itself (its embedded runtime, webhooks to itself);
    # `falweb serve` and the test servers set it once bound. Empty = each request's own
    # listening address (never the Host header, which a caller chooses).
    "FALWEB_SELF_URL": "",
    # JWKS that signs webhooks; empty = fal's, or the local runtime's in local mode.
    "FALWEB_WEBHOOK_JWKS_URL": "",
    # Accept webhooks only from this fal user id (X-Fal-Webhook-User-Id); empty = any.
    "FALWEB_WEBHOOK_USER_ID": "",
    # Seconds a webhook's timestamp may differ from now.
    "FALWEB_WEBHOOK_TOLERANCE": 300,
    # Largest webhook body accepted, in bytes (413 above; checked before the body is read).
    "FALWEB_WEBHOOK_MAX_BYTES": 32 * 1024 * 1024,
    # Largest form post the pages read (file uploads included), in bytes (413 above).
    "FALWEB_FORM_MAX_BYTES": 64 * 1024 * 1024,
    # Who may use the app: "password", "header", "none", or "" (auto: password once a user
    # or FALWEB_PASSWORD exists, else open to this machine only). See falweb/auth.py.
    "FALWEB_AUTH": "",
    # One password for the one-person case: log in as "admin" with it (password mode).
    "FALWEB_PASSWORD": "",
    # header mode: the request header in which the reverse proxy names the user.
    "FALWEB_AUTH_HEADER": "X-Forwarded-User",
    # header mode: addresses (IPs or CIDRs, comma-separated) whose user header is believed.
    "FALWEB_TRUSTED_PROXIES": "",
    # header mode: user names that are admins (see and manage every request), comma-separated.
    "FALWEB_ADMIN_USERS": "",
    # Live-mode sessions at once per process (each holds a server thread); more get "busy".
    "FALWEB_LIVE_MAX_SESSIONS": 48,
    # Seconds a live session may go without input before the server closes it.
    "FALWEB_LIVE_IDLE_SECONDS": 300.0,
    # Request pages' status event streams open at once per process (each holds a server
    # thread); over it a page polls. 0 = no push: every request page polls.
    "FALWEB_STATUS_STREAMS_MAX": 32,
    # Seconds one status event stream lasts at most; the page then polls until it reconnects.
    "FALWEB_STATUS_STREAM_MAX_SECONDS": 300.0,
    # Requests per history page.
    "FALWEB_HISTORY_PER_PAGE": 20,
    # Poll the backend for unfinished history rows after a restart (in the background).
    "FALWEB_HISTORY_RECONCILE": True,
    # Content-Security-Policy of every page; empty = falweb's own strict one, "off" = none.
    "FALWEB_CSP": "",
    # Days a finished request stays in the history before the cleanup deletes it; 0 = forever.
    "FALWEB_HISTORY_RETENTION_DAYS": 90,
    # Minutes between background history cleanups (one also runs at start); 0 = no cleanup.
    "FALWEB_HISTORY_CLEANUP_MINUTES": 60.0,
    # Rate limits and daily caps in force (the FALWEB_LIMIT_* keys below); false = none.
    "FALWEB_LIMITS_ENABLED": True,
    # Limit counters: empty = limits.sqlite in the instance folder, "memory://", "redis://…".
    "FALWEB_LIMITS_STORAGE_URL": "",
    # Submits (forms, re-runs, proxy queue submits and runs) per user and per address; "" = none.
    "FALWEB_LIMIT_SUBMITS": "30/minute;1000/day",
    # Proxy calls of any kind (status polls included) per user and per address; "" = no limit.
    "FALWEB_LIMIT_PROXY": "600/minute;50000/day",
    # Uploads (form files, proxy storage initiates) per user and per address; "" = no limit.
    "FALWEB_LIMIT_UPLOADS": "60/minute;1000/day",
    # Inputs sent over live-mode websockets per user and per address; "" = no limit.
    "FALWEB_LIMIT_LIVE_FRAMES": "10/second;600/minute;20000/day",
}

# fal's own credential variables, kept under fal's names so existing set-ups work unchanged.
CREDENTIAL_KEYS = ("FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET")


def _parse(raw, default):
    if isinstance(default, bool):
        return raw.strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, (list, tuple, dict)):
        try:
            return json.loads(raw)
        except ValueError:
            # A plain comma-separated list reads as one, as people write it in a shell.
            if isinstance(default, dict):
                raise
            return [item.strip() for item in raw.split(",") if item.strip()]
    if default is None:
        return None if raw.strip().lower() in ("", "none", "null") else raw
    return raw


def from_environ(environ=None, defaults=None):
    """Return the settings that the environment overrides, parsed to their defaults' types
    (``defaults``: more keys to read, such as the proxy's ``FAL_PROXY_*``)."""
    environ = os.environ if environ is None else environ
    found = {}
    for key, default in (DEFAULTS | dict(defaults or {})).items():
        if key in environ:
            try:
                found[key] = _parse(environ[key], default)
            except ValueError as exc:
                raise ValueError(f"{key}: cannot parse {environ[key]!r} ({exc})") from None
    for key in CREDENTIAL_KEYS:
        if environ.get(key):
            found[key] = environ[key]
    return found


def credentials_from(mapping):
    """fal's credentials in ``mapping`` (app config or ``os.environ``), as fal's JS client's
    ``credentialsFromEnv`` reads them: ``FAL_KEY`` (present, it wins even when empty), else
    ``FAL_KEY_ID:FAL_KEY_SECRET``, else None. The one rule for the app, proxy, CLI and client.
    """
    if mapping.get("FAL_KEY") is not None:
        return mapping["FAL_KEY"] or None
    if mapping.get("FAL_KEY_ID") and mapping.get("FAL_KEY_SECRET"):
        return f"{mapping['FAL_KEY_ID']}:{mapping['FAL_KEY_SECRET']}"
    return None


def backend_of(mapping):
    """``"fal"`` or ``"local"`` for ``mapping`` (app config or ``os.environ``).

    ``FALWEB_BACKEND`` when set; else local when ``FALWEB_LOCAL_URL`` names a runtime (an
    explicit choice); else fal exactly when a key is configured. The one rule for the app,
    the CLI and the client's defaults. Raises ``ValueError`` for another ``FALWEB_BACKEND``.
    """
    backend = (mapping.get("FALWEB_BACKEND") or "").strip().lower()
    if backend in ("fal", "local"):
        return backend
    if backend:
        raise ValueError(f"FALWEB_BACKEND must be 'fal', 'local' or empty, not {backend!r}")
    if mapping.get("FALWEB_LOCAL_URL"):
        return "local"
    return "fal" if credentials_from(mapping) else "local"
