"""fal apps that go wrong in the ways the runtime must report clearly."""

import time

import fal
from pydantic import BaseModel


class Input(BaseModel):
    prompt: str = "x"


class Output(BaseModel):
    count: int


class SetupCrash(fal.App, name="setup-crash"):
    def setup(self):
        raise RuntimeError("the weights file is missing")

    @fal.endpoint("/")
    def run(self, input: Input) -> Output:
        return Output(count=1)


class NeverHealthy(fal.App, name="never-healthy"):
    def setup(self):
        time.sleep(3600)

    @fal.endpoint("/")
    def run(self, input: Input) -> Output:
        return Output(count=1)


class WrongOutput(fal.App, name="wrong-output"):
    @fal.endpoint("/")
    def run(self, input: Input) -> Output:
        return {"count": "not a number"}


class Seen(BaseModel):
    request_id: str | None
    endpoint: str | None
    attempts: int


class Flaky(fal.App, name="flaky"):
    """Answers 503 (a runner that is not ready) before it answers; says what it was sent."""

    def setup(self):
        self.attempts = {}

    @fal.endpoint("/")
    def run(self, input: Input) -> Seen:
        from fastapi import HTTPException

        request = self.current_request
        count = self.attempts[input.prompt] = self.attempts.get(input.prompt, 0) + 1
        if count < 3:
            raise HTTPException(503, "warming up")
        return Seen(request_id=request.request_id, endpoint=request.endpoint, attempts=count)

    @fal.endpoint("/final")
    def final(self, input: Input) -> Seen:
        from fastapi import HTTPException

        raise HTTPException(503, "gone for good", headers={"x-fal-no-retry": "1"})
