"""The bootstrap's output framing: what an app prints becomes one JSON line per line,
tagged with the request it was printed for."""

import io
import json

from falweb.local.apps import bootstrap


def test_printed_lines_become_tagged_json_lines(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(bootstrap, "_out", out)
    writer = bootstrap.LogWriter("stderr")
    token = bootstrap._request_id.set("req-1")
    try:
        writer.write("step 1\n50%|##   \r100%|#####\r\npartial")
        writer.write(" line")
        writer.flush()
    finally:
        bootstrap._request_id.reset(token)
    writer.write("outside\n")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["log"], e["request_id"]) for e in lines] == [
        ("step 1", "req-1"), ("50%|##", "req-1"), ("100%|#####", "req-1"),
        ("partial line", "req-1"), ("outside", None)]
    assert all(e["stream"] == "stderr" for e in lines)
