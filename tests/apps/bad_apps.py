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
