"""The playground page of `textrnn serve` (`GET /`; off with `--no-playground`).

One plain HTML page, its script and its style sheet, shipped as package data
beside this module: no build step, nothing fetched from the internet. The page
talks to the server's own REST API (the status and metadata API, `:predict`,
`:generate_stream`); the only route it adds for itself is the list of model
names, which TensorFlow Serving's API does not have.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from aiohttp import web

from textrnn.serving.errors import ServingError
from textrnn.serving.http_messages import json_answer

PAGE_PATH = re.compile(r"/(?:playground/?)?")  # /, /playground, /playground/
ASSET_PATH = re.compile(r"/playground/(app\.js|style\.css)")
MODELS_PATH = re.compile(r"/playground/models")
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
# The page loads nothing from elsewhere, and the browser holds it to that.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}


@cache
def asset(name: str) -> bytes:
    return resources.files(__name__).joinpath(name).read_bytes()


def _check_enabled(front, request: web.BaseRequest) -> None:
    if not front.options.playground:
        raise ServingError(
            "NOT_FOUND",
            f"no such endpoint: GET {request.path[:200]} (the playground is off: "
            "--no-playground; the API is under /v1/models)",
        )


def _file(name: str) -> web.Response:
    content_type = CONTENT_TYPES[name[name.rindex(".") :]]
    return web.Response(
        body=asset(name), content_type=content_type, charset="utf-8", headers=PAGE_HEADERS
    )


async def page(front, request: web.BaseRequest, match: re.Match[str]) -> web.Response:
    """`GET /`: the page."""
    _check_enabled(front, request)
    return _file("index.html")


async def page_asset(front, request: web.BaseRequest, match: re.Match[str]) -> web.Response:
    """`GET /playground/app.js` and `/playground/style.css`."""
    _check_enabled(front, request)
    return _file(match[1])


async def model_names(front, request: web.BaseRequest, match: re.Match[str]) -> web.Response:
    """`GET /playground/models`: `{"models": [names]}`; their versions come from the status API."""
    _check_enabled(front, request)
    return json_answer(200, {"models": front.registry.model_names()})
