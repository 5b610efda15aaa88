"""gunicorn's threaded worker, with request headers read by the poller before a thread is used.

gunicorn's ``gthread`` worker hands a connection to a thread as soon as its first byte
arrives; the thread then blocks until the whole request head is in. A client that trickles
its headers (slowloris) therefore holds a thread for as long as it likes, and a few hundred
such clients hold them all: ``/healthz`` stops answering. This worker keeps a connection in
the worker's poller, reading what arrives without blocking, until its head is complete
(the blank line after the headers); only then does a thread parse and answer it, from the
bytes already read. A head that is not complete within ``FALWEB_HEADER_TIMEOUT`` seconds
(default 10) is answered 408 and closed. So slow clients cost a socket each, never a thread.

A kept-alive connection whose next request head is complete within
``FALWEB_KEEPALIVE_LINGER`` seconds (default 0.005) of the last answer is served on the same
thread, without the trip through the poller and back to a thread: a busy client (a proxy's
caller, a poller) then costs no hand-offs, which were a fifth of the proxy's CPU per
request. The thread peeks, never reads, so a head that is not complete in time goes to the
poller with its deadline as usual; and threads linger only while at most half of them are
busy, so idle kept-alive clients can never hold the threads that new requests need.

New connections go to the worker holding fewest (``ConnectionCounts``), not to whichever
worker's accept() runs first, which could give one worker all of a few kept-alive clients.

This is what a buffering reverse proxy (nginx, Caddy) does in front; one is still what a
public deployment wants, for TLS and for slow *bodies*, which this worker does not buffer
(request bodies stream through to the app, so that proxy uploads stay flat in memory).

TLS connections (gunicorn's own ``certfile``) and HTTP/2 are handed to threads as gunicorn
does: their bytes cannot be read before the handshake. The worker relies on the internals
of gunicorn's ``ThreadWorker`` (``enqueue_req``, ``murder_pending``, the connection's parser),
hence the version range pinned in ``pyproject.toml`` and the tests in ``tests/test_deploy.py``.
"""

import collections
import mmap
import os
import select
import selectors
import socket
import struct
import threading
import time
from functools import partial

from gunicorn.workers.gthread import ThreadWorker

HEADER_END = b"\r\n\r\n"
# A head that grows past this without ending is the parser's to refuse (431/400 by
# gunicorn's own limits); reading on would only buffer more of it.
MAX_HEAD = 64 * 1024
# Seconds a worker that holds more connections than another waits before it accepts a
# connection the other has not taken (see HeaderDeadlineWorker.accept).
ACCEPT_PAUSE = 0.0005
TIMEOUT_ANSWER = (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                  b"Content-Length: 0\r\n\r\n")


class ConnectionCounts:
    """How many connections each worker holds, in memory shared by the workers of one
    gunicorn: made when the master imports this module, inherited by every worker it forks.

    A slot per worker (its ``age``, which gunicorn numbers from 1 for each worker it
    starts, modulo SLOTS): pid, connections and when it last said so. A worker that has not
    said so for STALE seconds (stopped, killed) does not count. Slots are written without a
    lock: a read torn by a write misjudges one accept by a pause, no more.
    """

    SLOTS = 64
    STALE = 3.0
    _SLOT = struct.Struct("=iid")  # pid, connections, monotonic time

    def __init__(self):
        self._memory = mmap.mmap(-1, self.SLOTS * self._SLOT.size)

    def publish(self, age, pid, connections):
        self._SLOT.pack_into(self._memory, (age % self.SLOTS) * self._SLOT.size,
                             pid, connections, time.monotonic())

    def fewest_besides(self, age):
        """The fewest connections another live worker holds (a large number if none)."""
        fewest = 1 << 30
        mine = age % self.SLOTS
        oldest = time.monotonic() - self.STALE
        for slot in range(self.SLOTS):
            pid, connections, said = self._SLOT.unpack_from(self._memory,
                                                            slot * self._SLOT.size)
            if pid and slot != mine and said >= oldest:
                fewest = min(fewest, connections)
        return fewest


CONNECTIONS = ConnectionCounts()


class HeaderDeadlineWorker(ThreadWorker):
    """``gthread`` with request heads read by the poller, within a deadline."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.header_timeout = float(os.environ.get("FALWEB_HEADER_TIMEOUT", "10"))
        # Never longer than gunicorn's keep-alive: a quiet connection is closed after that.
        self.keepalive_linger = min(float(os.environ.get("FALWEB_KEEPALIVE_LINGER", "0.005")),
                                    self.cfg.keepalive)
        self._accept_resume_at = None  # accepting again then (see accept)
        self._busy = 0  # threads inside handle(), lingering included
        self._busy_lock = threading.Lock()
        # Connections whose head is still arriving, oldest first (deadlines grow with it).
        self.reading_heads = collections.deque()

    # -- connections shared out between workers ----------------------------------------------

    def accept(self, listener):
        # Every worker polls the same listening socket and the first to call accept() gets
        # the connection: a lottery, which with a few kept-alive clients (a benchmark's 8, a
        # reverse proxy's pool of upstream connections) often gave one worker 6 or all 8
        # and left the other idle. Here the workers publish how many connections each holds
        # (CONNECTIONS, shared memory); one that holds more than another pauses accepting
        # for ACCEPT_PAUSE, so the one holding fewest takes the connection, and takes it
        # itself only if it is still waiting then.
        CONNECTIONS.publish(self.age, self.pid, self.nr_conns)
        if self.nr_conns <= CONNECTIONS.fewest_besides(self.age):
            return super().accept(listener)
        self._accept_resume_at = time.monotonic() + ACCEPT_PAUSE
        super().set_accept_enabled(False)

    def set_accept_enabled(self, enabled):
        if enabled and self._accept_resume_at is not None:
            return  # pausing (see accept): wait_for_and_dispatch_events resumes
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout):
        CONNECTIONS.publish(self.age, self.pid, self.nr_conns)
        resume = self._accept_resume_at
        if resume is not None:
            left = resume - time.monotonic()
            if left > 0:
                timeout = min(timeout, left)
            else:
                self._accept_resume_at = None
                if self.alive:
                    # One connection still waiting, if no other worker took it meanwhile.
                    for listener in self.sockets:
                        super().accept(listener)
                    super().set_accept_enabled(self.nr_conns < self.worker_connections)
        return super().wait_for_and_dispatch_events(timeout)

    def _buffers_heads(self):
        # HTTP/2 with prior knowledge starts with a preface, not a head: gunicorn's path.
        prior = getattr(self.cfg, "http2_cleartext", None) in ("prior-knowledge", "both")
        return not self.cfg.is_ssl and not prior

    def enqueue_req(self, conn):
        held = conn.parser.unreader.buf.getvalue() if conn.parser is not None else b""
        if not self._buffers_heads() or held or not self.alive:
            # Bytes read ahead into the next request (pipelining) are already here:
            # gunicorn's own path answers them.
            return super().enqueue_req(conn)
        conn.head = bytearray()
        conn.head_deadline = time.monotonic() + self.header_timeout
        conn.sock.setblocking(False)
        # Most clients send the whole head at once: read it now, without a poller round.
        if self._read_head(conn, registered=False):
            return
        self.reading_heads.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ,
                             partial(self._on_head_bytes, conn))

    def _on_head_bytes(self, conn, client):
        self._read_head(conn, registered=True)

    def _read_head(self, conn, registered):
        """Read what has arrived of ``conn``'s head; True once the connection is handed on
        (to a thread with its head complete, or closed), False while more is awaited."""
        try:
            data = conn.sock.recv(MAX_HEAD)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:  # the client went away before its request was complete
            self._drop(conn)
            return True
        conn.head += data
        # Only the tail can complete the blank line: search from just before the new bytes.
        start = max(0, len(conn.head) - len(data) - len(HEADER_END) + 1)
        if conn.head.find(HEADER_END, start) < 0 and len(conn.head) < MAX_HEAD:
            return False
        if registered:
            self._forget(conn)
        conn.data_ready = True
        super().enqueue_req(conn)
        return True

    def handle(self, conn):
        head = getattr(conn, "head", None)
        if head:
            conn.head = None
            conn.sock.setblocking(True)
            conn.init()
            if conn.parser is not None:
                conn.parser.unreader.unread(bytes(head))
        with self._busy_lock:
            self._busy += 1
        try:
            keep = super().handle(conn)
            while keep is True and self._next_head_is_here(conn):
                keep = super().handle(conn)
            return keep
        finally:
            with self._busy_lock:
                self._busy -= 1

    def _next_head_is_here(self, conn):
        """Whether ``conn``'s next request head is complete within the linger (so that this
        thread may answer it), without reading it: otherwise the poller takes it as usual."""
        if not (self.keepalive_linger > 0 and self.alive and self._buffers_heads()
                and conn.parser is not None and self._busy * 2 <= self.cfg.threads):
            return False
        if conn.parser.unreader.buf.getvalue():
            return False  # read ahead already (pipelining): gunicorn's own path answers it
        waiting = select.poll()
        waiting.register(conn.sock, select.POLLIN)
        if not waiting.poll(self.keepalive_linger * 1000):
            return False
        try:
            peeked = conn.sock.recv(MAX_HEAD, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except OSError:
            return False
        return HEADER_END in peeked

    def _forget(self, conn):
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        try:
            self.reading_heads.remove(conn)
        except ValueError:
            pass

    def _drop(self, conn, answer=None):
        self._forget(conn)
        if answer:
            try:
                conn.sock.send(answer)
            except OSError:
                pass
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self):
        super().murder_pending()
        now = time.monotonic()
        while self.reading_heads and self.reading_heads[0].head_deadline <= now:
            conn = self.reading_heads[0]
            # Nothing at all yet is a kept-alive connection going quiet: close it quietly.
            self._drop(conn, TIMEOUT_ANSWER if conn.head else None)

    def murder_keepalived(self, force=False):
        super().murder_keepalived(force)
        if force:
            while self.reading_heads:
                self._drop(self.reading_heads[0])
