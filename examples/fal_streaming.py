"""A fal app that streams its progress as server-sent events, then its output.

fal's clients call it with ``stream("<owner>/<app>/stream", ...)``: each ``data:`` event is
one JSON object; the last one is the output. Served unchanged by falweb's runtime.
"""

import json
import time

import fal
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from pydantic import Field


class StreamInput(BaseModel):
    prompt: str
    steps: int = Field(4, ge=1, le=100)
    step_seconds: float = Field(0.0, ge=0, le=5)


class StreamingText(fal.App, keep_alive=300, name="streaming-text"):
    @fal.endpoint("/stream")
    def stream(self, input: StreamInput) -> StreamingResponse:
        def events():
            words = []
            for step in range(1, input.steps + 1):
                time.sleep(input.step_seconds)
                words.append(f"{input.prompt}-{step}")
                yield f"data: {json.dumps({'step': step, 'partial': True})}\n\n"
            yield f"data: {json.dumps({'text': ' '.join(words), 'steps': input.steps})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")
