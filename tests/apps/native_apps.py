"""Native (falweb.apps) apps for the tests: realtime, SSE, a crash in setup."""

import json
import threading
import time

from pydantic import BaseModel

from falweb.apps import App
from falweb.apps import File
from falweb.apps import StreamingResponse
from falweb.apps import endpoint
from falweb.apps import realtime


class Echo(BaseModel):
    text: str
    n: int = 0


class Doubled(BaseModel):
    text: str
    n: int
    data: bytes


class NativeTools(App, name="native-tools", max_concurrency=1):
    def setup(self):
        self.prefix = "echo:"
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0

    @endpoint("/slow")
    def slow(self, input: Echo) -> Echo:
        # Counts the calls running at once: the runtime must keep it to max_concurrency.
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        print(f"slow {input.text}")
        time.sleep(input.n / 10)
        with self.lock:
            self.running -= 1
        return input

    @endpoint("/peak")
    def peak_seen(self, input: Echo) -> dict:
        return {"peak": self.peak}

    @realtime("/realtime")
    def echo(self, input: Echo) -> Doubled:
        return Doubled(text=self.prefix + input.text, n=input.n * 2, data=input.text.encode())

    @endpoint("/stream")
    def stream(self, input: Echo) -> StreamingResponse:
        def events():
            for step in range(1, input.n + 1):
                print(f"event {step}")
                yield f"data: {json.dumps({'step': step})}\n\n"
            yield f"data: {json.dumps({'text': input.text})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @endpoint("/file")
    def file(self, input: Echo) -> dict:
        return {"file": File.from_bytes(input.text.encode(), "text/plain").model_dump()}


class NativeSetupCrash(App, name="native-setup-crash"):
    def setup(self):
        raise ValueError("no such model: tiny-sd")

    @endpoint("/")
    def run(self, input: Echo) -> Echo:
        return input


class NativeSleeper(App, name="native-sleeper"):
    """No /cancel route: a cancel drops the call, as fal cancels a direct request."""

    @endpoint("/")
    def sleep(self, input: Echo) -> Echo:
        for step in range(input.n):
            print(f"tick {step}")
            time.sleep(0.1)
        return input
