"""The realtime session's rules, shared by both clients, step by step with a made-up clock
(what the socket tests cannot pin down: exact windows and delays)."""

import base64
import json

import msgpack
import pytest

from falweb.client import RetryPolicy
from falweb.client.realtime_core import RealtimeCore
from falweb.client.realtime_core import token_lifetime


def jwt_expiring_at(exp):
    payload = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).rstrip(b"=")
    return f"h.{payload.decode()}.s"


def opened(core, now=0.0):
    assert core.next_action(now, False) == ("token",)
    core.token_fetched("t", now)
    assert core.next_action(now, False) == ("connect",)
    core.opened()
    return core


def test_throttle_sends_the_first_at_once_then_only_the_latest():
    core = opened(RealtimeCore("fal-ai/x", throttle_interval=0.5, token_expiration=100))
    core.offer({"n": 1})
    kind, frame = core.next_action(1.0, True)
    assert kind == "send" and msgpack.unpackb(frame) == {"n": 1}
    core.offer({"n": 2})
    core.offer({"n": 3})
    assert core.next_action(1.2, True) == ("wait", pytest.approx(0.3))
    kind, frame = core.next_action(1.5, True)
    assert kind == "send" and msgpack.unpackb(frame) == {"n": 3}
    assert core.next_action(1.6, True)[0] == "wait"


def test_before_the_socket_opens_only_the_latest_input_waits():
    core = RealtimeCore("fal-ai/x", token_expiration=100)
    assert core.state == "idle"
    core.offer({"n": 1})
    core.offer({"n": 2})
    assert core.state == "connecting"
    opened(core)
    assert core.state == "open"
    assert msgpack.unpackb(core.next_action(0.0, True)[1]) == {"n": 2}


def test_the_token_is_refreshed_at_nine_tenths_of_its_life(monkeypatch):
    core = opened(RealtimeCore("fal-ai/x", token_expiration=100))
    assert core.next_action(89.0, True)[0] == "wait"
    assert core.next_action(90.0, True) == ("token",)
    core.token_failed(90.0)  # tried again after 5 % of the life
    assert core.next_action(94.0, True)[0] == "wait"
    assert core.next_action(95.0, True) == ("token",)


def test_the_token_lifetime_is_read_from_its_exp():
    assert token_lifetime(jwt_expiring_at(1000.0), 120, now_wall=999.0) == 1.0
    assert token_lifetime("opaque", 120) == 120.0


def test_a_lost_socket_reconnects_with_growing_waits_until_closed():
    policy = RetryPolicy(max_retries=100, base_delay=0.1, max_delay=1.0, jitter=False)
    core = opened(RealtimeCore("fal-ai/x", token_expiration=100, reconnect=policy))
    waits = [core.lost(10.0, normal=False) for _ in range(6)]
    assert waits == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert core.state == "connecting" and core.next_action(10.5, False)[0] == "wait"
    assert core.next_action(11.0, False) == ("connect",)
    core.opened()
    assert core.lost(20.0, normal=False) == 0.1  # an open socket resets the backoff
    core.closing = True
    assert core.next_action(20.0, False) == ("close",)


def test_a_normal_close_reopens_only_on_the_next_send_and_a_refused_token_is_dropped():
    core = opened(RealtimeCore("fal-ai/x", token_expiration=100))
    core.lost(5.0, normal=True)
    assert core.next_action(5.0, False) == ("wait", None)
    core.offer({"n": 1})
    assert core.next_action(5.0, False) == ("connect",)
    core.lost(6.0, normal=False, unauthorized=True)
    assert core.token is None
    assert core.next_action(100.0, False) == ("token",)


def test_bad_settings_name_the_setting():
    with pytest.raises(ValueError, match="max_buffering"):
        RealtimeCore("fal-ai/x", max_buffering=0)
    with pytest.raises(ValueError, match="throttle_interval"):
        RealtimeCore("fal-ai/x", throttle_interval=-1)
