"""Lingering close: answer a request early, then read and drop the rest of its body.

A server that refuses a body while it arrives (413) and closes at once leaves unread bytes in
its socket; the kernel answers those with a TCP reset, and a reset makes the client's kernel
throw away whatever it had received and not yet read, the 413 included. A client that sends its
whole body before it reads (Python's ``http.client``, so ``urllib`` and ``requests``) then sees
"connection reset by peer" instead of the answer; ``curl`` reads while it sends and is spared.
So, as nginx (``lingering_close``) and Apache do, the answer is sent first, the rest of the body
is read and dropped, and only then is the connection closed.

Dropping costs bandwidth and a connection, not memory, but a client could send for ever: the
draining stops at the first of these bounds and the connection is then closed: a client still
sending past them is cut off by the reset, and the server never waits on it for longer.
"""

from __future__ import annotations

import asyncio

from starlette.responses import Response

# 128 MiB: well past the uploads a client may try by mistake (a 64 MiB video frame dump, a
# whole file instead of a frame) and small next to the bandwidth of one second of a LAN link.
DRAIN_MAX_BYTES = 128 * 2**20
# The whole drain: at 5 s a 64 MiB body needs about 100 Mbit/s; slower clients are cut off, as
# they are by nginx (its lingering_time is 30 s, but it drains in the kernel, not in Python).
DRAIN_MAX_S = 5.0
# No byte for this long: the client has stopped sending (or never started, having sent
# ``Expect: 100-continue`` and got the final answer instead of a 100).
DRAIN_IDLE_S = 1.0


async def answer_then_drain(response: Response, receive, send, *, drain: bool) -> int:
    """Send ``response`` whole but leave the ASGI response open, drop the rest of the request
    body (when ``drain``), then complete the response; the server then closes the connection
    if ``response`` says ``Connection: close``. Returns the bytes dropped."""
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    # The body with more_body=True reaches the client now; an ASGI server stops reading the
    # request (its receive answers "disconnect") only once the response is complete.
    await send({"type": "http.response.body", "body": response.body, "more_body": True})
    dropped = await drop_body(receive) if drain else 0
    await send({"type": "http.response.body", "body": b"", "more_body": False})
    return dropped


async def drop_body(receive) -> int:
    """Read and discard request body messages until the body ends, the client goes, or a
    bound of this module is reached; the bytes dropped."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DRAIN_MAX_S
    dropped = 0
    while dropped <= DRAIN_MAX_BYTES:
        wait_s = min(DRAIN_IDLE_S, deadline - loop.time())
        if wait_s <= 0:
            break
        try:
            message = await asyncio.wait_for(receive(), wait_s)
        except asyncio.TimeoutError:
            break
        if message["type"] != "http.request":  # the client closed
            break
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return dropped
