"""The CloudEvents NATS binding and the name checks, without a server."""

from __future__ import annotations

import pytest

from agentry import DecodeError, InvalidName, Mode, wire
from agentry.events import decode, encode, new_event


def test_binary_mode_percent_encodes_header_values_and_round_trips() -> None:
    ev = new_event("id-1", "/größe 100% \"ok\"", wire.Type.TASK_REQUESTED, {"input": {"n": 1}}, {"replyto": "agentry.results.id-1"})
    headers, body = encode(ev, Mode.BINARY)
    assert headers["ce-source"] == "/gr%C3%B6%C3%9Fe%20100%25%20%22ok%22"
    assert all(" " not in v for v in headers.values())
    back = decode(headers, body)
    assert back["source"] == "/größe 100% \"ok\""
    assert back["replyto"] == "agentry.results.id-1"
    assert back.get_data() == {"input": {"n": 1}}


def test_structured_mode_round_trips() -> None:
    ev = new_event("id-2", "/py", wire.Type.TASK_COMPLETED, {"output": [1, 2]}, {"requestid": "r"})
    headers, body = encode(ev, Mode.STRUCTURED)
    assert headers == {"Content-Type": "application/cloudevents+json"}
    back = decode({"content-type": "Application/CloudEvents+JSON; charset=utf-8"}, body)
    assert back["requestid"] == "r" and back.get_data() == {"output": [1, 2]}


@pytest.mark.parametrize(
    "headers, body",
    [
        ({"ce-id": "x", "ce-source": "/s", "ce-type": "t"}, b"{}"),  # no specversion
        ({"ce-specversion": "1.0", "ce-id": "x", "ce-source": "/s", "ce-type": "t"}, b"{not json"),
        ({"ce-specversion": "1.0", "ce-id": "x", "ce-source": "/%FF", "ce-type": "t"}, b"{}"),  # not UTF-8
        ({"ce-specversion": "1.0", "ce-id": "x", "ce-source": "/%G1", "ce-type": "t"}, b"{}"),
        ({"Content-Type": "application/cloudevents+json"}, b"[1,2"),
    ],
)
def test_bad_messages_are_decode_errors(headers: dict[str, str], body: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(headers, body)


def test_names_and_subjects() -> None:
    assert wire.results_for("acme", "r1") == "agentry.results.acme.r1"
    assert wire.results_for(None, "r1") == "agentry.results.r1"
    assert wire.requests_for("acme") == "agentry.requests.acme"
    assert wire.request_key("acme", "r1") == "acme.r1"
    assert wire.generate_agent_id("word_count").startswith("word-count-")
    assert wire.is_allowed_reply("agentry.steps.run1")
    assert wire.is_allowed_reply("agentry.steps.acme.run1")
    assert not wire.is_allowed_reply("agentry.steps.acme.run1.x")
    assert not wire.is_allowed_reply("agentry.steps.Acme.run1")
    assert not wire.is_allowed_reply("agentry.results.acme.r1.x")
    assert not wire.is_allowed_reply("$JS.API.STREAM.DELETE.X")
    for bad in ("Acme", "1acme", "a.b", ">", ""):
        with pytest.raises(InvalidName):
            wire.tenant(bad)
    with pytest.raises(InvalidName):
        wire.capability("Bad-Cap")
