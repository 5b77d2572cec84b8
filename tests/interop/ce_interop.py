#!/usr/bin/env python3
"""CloudEvents interop peer for the agentry test suite.

Uses the official Python CloudEvents SDK (which has no NATS binding: its HTTP
binary/structured conversions are mapped onto NATS headers by hand, with
`ce-datacontenttype` instead of `Content-Type` in binary mode, as the NATS
protocol binding specifies) and nats-py.

  publish <url> <subject> <binary|structured>   publish two events, print their ids
  receive <url> <subject> <count>               decode <count> events, print them as JSON lines
"""
import asyncio
import json
import sys

import nats
from cloudevents.v1.http import CloudEvent, from_http, to_binary, to_structured


def make_events():
    a = CloudEvent(
        {
            "type": "io.agentry.task.requested",
            "source": "/interop/python",
            "id": "py-evt-1",
            "subject": "größe 100% \"ok\"",
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        },
        {"capability": "echo", "input": {"text": "héllo wörld", "n": 42}},
    )
    b = CloudEvent(
        {"type": "io.agentry.test.bytes", "source": "/interop/python", "id": "py-evt-2",
         "datacontenttype": "application/octet-stream"},
        bytes([0, 1, 2, 250, 255]),
    )
    return [a, b]


async def publish(url, subject, mode):
    nc = await nats.connect(url)
    for ev in make_events():
        if mode == "binary":
            headers, body = to_binary(ev)
            hdrs = {}
            for k, v in headers.items():
                k = k.lower()
                if k == "content-type":
                    hdrs["ce-datacontenttype"] = v
                else:
                    hdrs[k] = v
            await nc.publish(subject, body if isinstance(body, bytes) else body.encode(), headers=hdrs)
        else:
            headers, body = to_structured(ev)
            await nc.publish(subject, body, headers={"Content-Type": headers["content-type"]})
        print(ev["id"])
    await nc.flush()
    await nc.close()


async def receive(url, subject, count):
    nc = await nats.connect(url)
    sub = await nc.subscribe(subject)
    # nats-py (2.16) writes a flush's PING straight to the socket while the
    # SUB waits in its pending buffer for the flusher task, so one flush can
    # come back before the server has the subscription. The first round trip
    # lets the flusher write the SUB; the second PING follows it.
    await nc.flush()
    await nc.flush()
    print("READY", flush=True)
    for _ in range(count):
        msg = await sub.next_msg(timeout=60)
        headers = dict(msg.headers or {})
        http_headers = {}
        for k, v in headers.items():
            if k.lower() == "ce-datacontenttype":
                http_headers["content-type"] = v
            else:
                http_headers[k] = v
        ev = from_http(http_headers, msg.data)
        data = ev.data
        if isinstance(data, (bytes, bytearray)):
            data = {"bytes": list(data)}
        attrs = {k: v for k, v in ev.get_attributes().items() if k != "time"}
        print(json.dumps({"attributes": attrs, "data": data}, ensure_ascii=False), flush=True)
    await nc.close()


def main():
    cmd = sys.argv[1]
    if cmd == "publish":
        asyncio.run(publish(sys.argv[2], sys.argv[3], sys.argv[4]))
    elif cmd == "receive":
        asyncio.run(receive(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
