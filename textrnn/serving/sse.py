"""`POST /v1/models/{name}[/versions/{v}]:generate_stream`: generated text as server-sent events.

The body holds the `generate` knobs (`prompt`, `max_tokens`, `temperature`,
`top_k`, `top_p`, `seed`); the answer is `text/event-stream`: one event per
token or small group of tokens, `data: {"text": "..."}`, then `event: done`
with `{"text": <all of it>, "tokens": n, "seed": s}`. Anything wrong before the
first piece (a bad knob, a model that cannot stream, the deadline) is a plain
`{"error": "..."}` answer with its status; a failure after it is an
`event: error` with `{"error": "..."}`. The generation itself is
`streaming.TokenStream`, on a worker thread; a client that leaves stops it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from aiohttp import web

from textrnn.serving.errors import ServingError
from textrnn.serving.http_messages import parse_json_body
from textrnn.serving.streaming import StreamEvent

STREAM_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/([^/:]+))?:generate_stream", re.I)
SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # proxies such as nginx: pass events through as they come
}


async def generate_stream(front, request: web.BaseRequest, match: re.Match[str]):
    """Check the request, wait for the first piece, then stream the rest as it comes."""
    body = parse_json_body(await front.read_body(request))
    servable = front.registry.get(unquote(match[1]), match[2])
    stream = front.streamer.open(servable, body)
    response = web.StreamResponse(status=200, headers=SSE_HEADERS)
    try:
        event = await stream.next_event()  # a failure here is still a plain HTTP error
        await response.prepare(request)
        while event is not None:
            await response.write(event.encode())
            try:
                event = await stream.next_event()
            except ServingError as error:
                front.stats.add(errors=1)
                await response.write(StreamEvent("error", {"error": error.message}).encode())
                break
        await response.write_eof()
    except ConnectionError:  # the client left (aiohttp's ClientConnectionResetError is one)
        return response
    finally:
        stream.cancel()  # nothing to stop once it is done; else its worker stops now
    return response
