"""The app's one CSRF protection (Flask-WTF), checked only by the blueprints that ask.

The HTML blueprints (pages, login) call :func:`protect` before their views; the JSON ones
(proxy, webhooks, the runtime) authenticate their callers by other means and are never
checked, whatever the order in which they were registered.
"""

from flask import current_app
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()


def init_app(app):
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    csrf.init_app(app)


def protect():
    """Refuse this request (``CSRFError``, 400) unless it carries the session's token."""
    if current_app.config.get("WTF_CSRF_ENABLED", True):
        csrf.protect()
