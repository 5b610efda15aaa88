"""A running job's plain log lines, held back to go out with its next write.

An engine's log line used to be a write transaction of its own, and a step right after it
another (the preview engine's first line and first step: two of a job's six). A line is
now held here and written by whichever comes first: the job's next heartbeat (a step), its
completion, or the runtime's lease keeper, which writes lines held for LOG_DELAY seconds.
So no line waits unseen for longer than that, while a line followed at once by a step costs
no transaction of its own.
"""

import threading

from falweb.local.queue import iso_now

#: Seconds a log line may wait for its job's next write before the keeper writes it.
LOG_DELAY = 0.05


class HeldLogs:
    def __init__(self):
        self._lines = []
        self._lock = threading.Lock()
        #: Held by whoever writes the lines it took, until they are written: lines go out
        #: in the order they were logged, whoever writes them.
        self.writing = threading.Lock()

    def add(self, message, level):
        with self._lock:
            self._lines.append((message, level, iso_now()))

    def take(self):
        """The lines held so far, in order; none are held after this."""
        with self._lock:
            lines, self._lines = self._lines, []
        return lines

    def __bool__(self):
        return bool(self._lines)
