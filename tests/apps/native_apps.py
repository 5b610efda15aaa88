"""Native (falweb.apps) apps for the tests: realtime, SSE, a crash in setup."""

import json

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
