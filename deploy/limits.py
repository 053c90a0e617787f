"""Request limits of ``kdforge serve``'s MLflow route: body size, rows, finite numbers.

MLflow's scoring server reads any body, however large, and Python's ``json`` turns the
non-standard tokens ``NaN`` and ``Infinity`` into floats whose predictions come back as
bare ``NaN`` (not JSON). :class:`RequestLimits` wraps that server as ASGI middleware
and answers ``POST /invocations`` itself when the body is too large (413), holds more
rows than allowed (413) or holds a non-finite number (400), in MLflow's error shape
(``{"error_code": ..., "message": ...}``). Every other request passes through
untouched. Nothing here imports MLflow.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from kdforge.deploy.validation import BadRequest

# pandas is imported only to read a CSV request: JSON is what clients send.

__all__ = ["DEFAULT_MAX_BODY_MB", "DEFAULT_MAX_ROWS", "RequestLimits", "check_scoring_body"]

#: Default row limit per request (the Ray route's ``--max-batch-size`` default too).
DEFAULT_MAX_ROWS = 1024
#: Default body limit per request, in MB (10**6 bytes).
DEFAULT_MAX_BODY_MB = 16.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# MLflow's JSON input fields, and where the rows are in each.
_ROW_FIELDS = ("inputs", "instances", "dataframe_records")


def _reject_constant(token: str) -> float:
    raise BadRequest(
        400,
        "BAD_REQUEST",
        f"the input contains {token}, which is not a JSON number; send finite numbers only",
    )


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf
        raise BadRequest(400, "BAD_REQUEST", f"the input number {text} is not finite")
    return value


def _rows(document: Any) -> int | None:
    if not isinstance(document, dict):
        return None
    for field in _ROW_FIELDS:
        value = document.get(field)
        if isinstance(value, list):
            return len(value)
        if isinstance(value, dict):  # named tensors: rows of the first
            first = next(iter(value.values()), None)
            return len(first) if isinstance(first, list) else None
    split = document.get("dataframe_split")
    if isinstance(split, dict) and isinstance(split.get("data"), list):
        return len(split["data"])
    return None


def _batch(document: Any) -> Any:
    if not isinstance(document, dict):
        return None
    split = document.get("dataframe_split")
    data = split.get("data") if isinstance(split, dict) else None
    present = [document.get(field) for field in _ROW_FIELDS] + [data]
    return [value for value in present if value is not None]


def _holds_null(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            if any(element is None for element in item):
                return True
            stack.extend(element for element in item if isinstance(element, list | dict))
        elif isinstance(item, dict):
            if any(element is None for element in item.values()):
                return True
            stack.extend(item.values())
    return False


def check_scoring_body(body: bytes, content_type: str | None, max_rows: int) -> None:
    """Refuse a scoring request body with non-finite numbers or too many rows.

    Args:
        body: The raw body of ``POST /invocations``.
        content_type: Its ``Content-Type`` (JSON or CSV, as MLflow takes).
        max_rows: Most rows one request may hold.

    Raises:
        BadRequest: 400 for ``NaN``/``Infinity``/``null`` inputs (or a number that
            overflows), 413 for
            more than ``max_rows`` rows. Malformed JSON is left to MLflow's own answer.
    """
    kind = (content_type or "application/json").split(";")[0].strip().lower()
    rows: int | None
    if kind == "text/csv":
        rows = _csv_rows(body)
    else:
        try:
            document = json.loads(body, parse_constant=_reject_constant, parse_float=_finite_float)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return  # MLflow answers malformed JSON with its own 400
        if b"null" in body and _holds_null(_batch(document)):
            raise BadRequest(400, "BAD_REQUEST", "the input contains null values")
        rows = _rows(document)
    if rows is not None and rows > max_rows:
        raise BadRequest(
            413,
            "REQUEST_LIMIT_EXCEEDED",
            f"batch of {rows} rows exceeds the limit of {max_rows} rows per request "
            "(kdforge serve --max-batch-size); split it into smaller requests",
        )


def _csv_rows(body: bytes) -> int:
    """Data rows of a CSV body; refuses non-finite cells (``nan``, ``inf``, empty)."""
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(body))
    except Exception:  # malformed: MLflow answers it
        return 0
    numbers = frame.select_dtypes("number")
    if frame.isna().to_numpy().any() or not bool(
        numbers.apply(lambda column: column.map(math.isfinite)).to_numpy().all()
    ):
        raise BadRequest(400, "BAD_REQUEST", "the input contains empty, NaN or infinite cells")
    return len(frame)


class RequestLimits:
    """ASGI middleware enforcing the limits of :func:`check_scoring_body` on a server.

    Args:
        app: The wrapped ASGI app (MLflow's scoring server).
        max_body_bytes: Largest body of ``POST /invocations`` (more -> 413, not read on).
        max_rows: Most rows per request (more -> 413).
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int, max_rows: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_rows = max_rows

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check ``POST /invocations``; pass everything else on as it is."""
        if scope.get("type") != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        if scope.get("path") != "/invocations":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await self._read_body(headers, receive)
            check_scoring_body(body, headers.get("content-type"), self.max_rows)
        except BadRequest as refused:
            await _answer(send, refused)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read_body(self, headers: dict[str, str], receive: Receive) -> bytes:
        """The whole body; over the limit, the rest is read and dropped, then 413.

        Reading on (without keeping) lets the client finish sending and read the 413,
        instead of a connection reset halfway through its upload.
        """
        chunks, size = [], 0
        declared = headers.get("content-length", "")
        too_large = declared.isdigit() and int(declared) > self.max_body_bytes
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            too_large = too_large or size > self.max_body_bytes
            if not too_large:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if too_large:
            raise self._too_large(max(size, int(declared) if declared.isdigit() else 0))
        return b"".join(chunks)

    def _too_large(self, size: int) -> BadRequest:
        return BadRequest(
            413,
            "REQUEST_LIMIT_EXCEEDED",
            f"request body of {size:,} bytes is over the limit of {self.max_body_bytes:,} "
            "bytes (kdforge serve --max-body-mb); split it into smaller requests",
        )


async def _answer(send: Send, refused: BadRequest) -> None:
    content = json.dumps(refused.payload()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": refused.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})
