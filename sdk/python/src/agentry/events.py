"""The CloudEvents NATS binding agentry speaks (docs/protocol.md, "Events on
the wire"): binary mode (`ce-*` headers, percent-encoded values, JSON body)
and structured mode (`Content-Type: application/cloudevents+json`). Events
are `cloudevents.v1.http.CloudEvent`s; this module maps them onto NATS
headers and bodies, which the CloudEvents SDK has no binding for."""

from __future__ import annotations

import datetime as _dt
import enum
import json
from typing import Any, Mapping

from cloudevents.v1.conversion import to_json
from cloudevents.v1.http import CloudEvent, from_json

from . import wire
from .errors import DecodeError

__all__ = ["CloudEvent", "Mode", "new_event", "encode", "decode", "data_json"]


class Mode(enum.Enum):
    BINARY = "binary"
    STRUCTURED = "structured"


def new_event(
    id: str,
    source: str,
    type: str,
    data: Any,
    extensions: Mapping[str, str | int] | None = None,
) -> CloudEvent:
    attrs: dict[str, Any] = {
        "specversion": wire.SPEC_VERSION,
        "id": id,
        "source": source,
        "type": type,
        "datacontenttype": wire.JSON,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(),
    }
    for k, v in (extensions or {}).items():
        attrs[k] = v
    return CloudEvent(attrs, data)


def _header_value(text: str) -> str:
    """Percent-encodes space, `"`, `%` and every byte outside U+0021..U+007E (upper-case hex)."""
    out: list[str] = []
    for ch in text:
        if ch in ' "%' or not ("\x21" <= ch <= "\x7e"):
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out)


def _decode_header_value(name: str, raw: str) -> str:
    if "%" not in raw:
        return raw
    buf = bytearray()
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "%":
            try:
                buf.append(int(raw[i + 1 : i + 3], 16))
            except ValueError as e:
                raise DecodeError(f"header {name}: bad percent escape") from e
            i += 3
        else:
            buf.extend(c.encode("utf-8"))
            i += 1
    try:
        return buf.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DecodeError(f"header {name}: not UTF-8 after percent-decoding") from e


def encode(event: CloudEvent, mode: Mode = Mode.BINARY) -> tuple[dict[str, str], bytes]:
    """NATS headers and body for `event`."""
    if mode is Mode.STRUCTURED:
        return {wire.Header.CONTENT_TYPE: wire.STRUCTURED_CONTENT_TYPE}, to_json(event)
    headers = {f"ce-{k}": _header_value(str(v)) for k, v in event.get_attributes().items()}
    data = event.get_data()
    if data is None:
        body = b""
    elif isinstance(data, (bytes, bytearray)):
        body = bytes(data)
    else:
        body = json.dumps(data, separators=(",", ":")).encode()
    return headers, body


def decode(headers: Mapping[str, str] | None, body: bytes) -> CloudEvent:
    """Reads a message in either mode (structured iff Content-Type starts with `application/cloudevents`)."""
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    if hdrs.get("content-type", "").lower().startswith("application/cloudevents"):
        try:
            return from_json(body)
        except Exception as e:  # the SDK raises several unrelated types
            raise DecodeError(f"structured event: {e}") from e
    attrs: dict[str, Any] = {}
    for name, value in hdrs.items():
        if name.startswith("ce-"):
            attrs[name[3:]] = _decode_header_value(name, value)
    for required in ("specversion", "id", "source", "type"):
        if not attrs.get(required):
            raise DecodeError(f"binary event lacks ce-{required}")
    ctype = attrs.get("datacontenttype", wire.JSON)
    data: Any
    if not body:
        data = None
    elif "json" in ctype:
        try:
            data = json.loads(body)
        except ValueError as e:
            raise DecodeError(f"event {attrs['id']}: data is not JSON") from e
    else:
        data = body
    try:
        return CloudEvent(attrs, data)
    except Exception as e:
        raise DecodeError(f"event {attrs['id']}: {e}") from e


def data_json(event: CloudEvent) -> dict[str, Any]:
    """The event's data as a JSON object (empty when it is not one)."""
    data = event.get_data()
    if isinstance(data, (bytes, bytearray)):
        try:
            data = json.loads(data)
        except ValueError:
            return {}
    return data if isinstance(data, dict) else {}


def ext(event: CloudEvent, name: str) -> str | None:
    v = event.get_attributes().get(name)
    return None if v is None else str(v)
