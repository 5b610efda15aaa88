"""gunicorn settings for falweb (read automatically from the working directory).

Threaded workers (gthread): live-mode websockets and SSE relays each hold a thread for as
long as they last, which the sync worker would kill at ``timeout``; an idle thread costs
little, so there are many. Live sessions are capped per worker (FALWEB_LIVE_MAX_SESSIONS,
half the threads), and so are request pages' status streams (FALWEB_STATUS_STREAMS_MAX, a
quarter), so that together they never take every thread. A client that trickles its request
may not hold a thread: falweb's worker class reads each request's headers in the worker's
poller and hands the request to a thread only once they are complete (within
FALWEB_HEADER_TIMEOUT seconds, else 408; see falweb/gunicorn_worker.py). Slow *bodies* still
stream to the app on a thread: in public, a reverse proxy that buffers requests (nginx,
Caddy) stands in front. Override any of these on the command line or with GUNICORN_CMD_ARGS.
"""

import os

bind = os.environ.get("FALWEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("FALWEB_GUNICORN_WORKERS", "2"))
worker_class = "falweb.gunicorn_worker.HeaderDeadlineWorker"
threads = int(os.environ.get("FALWEB_GUNICORN_THREADS", "128"))
# Live sessions may take at most half of a worker's threads (the app reads this at start).
os.environ.setdefault("FALWEB_LIVE_MAX_SESSIONS", str(max(1, threads // 2)))
# Request pages' status streams at most a quarter (over it, a page polls instead).
os.environ.setdefault("FALWEB_STATUS_STREAMS_MAX", str(max(1, threads // 4)))
timeout = 60
graceful_timeout = 20
# No access log line per request unless FALWEB_ACCESS_LOG names where ("-": stdout). In
# public the reverse proxy in front logs every request, and falweb logs its own events (each
# proxied call with its timings, failures); gunicorn's line on top cost a fifth of a proxied
# request's CPU, its write a GIL hand-over per request.
accesslog = os.environ.get("FALWEB_ACCESS_LOG") or None
errorlog = "-"
# gunicorn's default line has the query string (%(r)s), where streams and realtime sockets
# carry their short-lived fal_jwt_token; log the path alone (%(U)s).
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'
# Keep proxy bodies streaming: no buffering of request bodies by gunicorn itself.
limit_request_field_size = 16380
