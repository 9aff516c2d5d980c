"""Request errors: a gRPC status name, the REST status it maps to, and one-line messages."""

from __future__ import annotations

import re

# gRPC status code name -> HTTP status, as TensorFlow Serving's http_server.cc maps them.
HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "NOT_FOUND": 404,
    "DEADLINE_EXCEEDED": 504,
    "RESOURCE_EXHAUSTED": 429,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "INTERNAL": 500,
    "UNKNOWN": 500,
}


class ServingError(Exception):
    """A request failed; `code` is a gRPC status name, `http_status` its REST status."""

    def __init__(self, code: str, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status or HTTP_STATUS.get(code, 500)


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    if text.startswith("Graph execution error"):
        return graph_error_message(text)[:500]
    line = text.splitlines()[0] if text else type(error).__name__
    return line[:500]


def graph_error_message(text: str) -> str:
    """The failing op's own message in TensorFlow's "Graph execution error:" text.

    That text is a header, then "Detected at node ... defined at" and the Python
    trace of where the node was built (indented; "<stack traces unavailable>" in a
    loaded SavedModel), then the message, then the node's name after a tab. An
    assertion's message is its first bracketed part: "assertion failed: [beam_size
    must be >= 1] [Condition ...".
    """
    for line in text.splitlines()[1:]:
        if (
            not line.strip()
            or line.startswith((" ", "\t", "Detected at node"))
            or line == "<stack traces unavailable>"  # a loaded SavedModel has no Python trace
        ):
            continue
        message = line.split("\t [[")[0].strip()
        found = re.match(r"assertion failed: \[(.*?)\]", message)
        return found[1] if found else message
    return "Graph execution error"
