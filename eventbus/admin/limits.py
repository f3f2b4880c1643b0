"""The request body limit (EVENTBUS_MAX_BODY_BYTES), enforced on the bytes received, not only Content-Length."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventbus.admin.errors import error_response


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once the body passes the limit.

    An HTTPException so FastAPI's body parsing re-raises it as is (it turns other errors into 400).
    """

    def __init__(self, max_body_bytes: int) -> None:
        super().__init__(
            413, f"request body is larger than {max_body_bytes} bytes; send less, or raise EVENTBUS_MAX_BODY_BYTES"
        )


class BodyLimitMiddleware:
    """Answer 413 for a declared or streamed body above ``max_body_bytes``."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await error_response(413, "body_too_large", BodyTooLarge(limit).detail)(scope, receive, send)
            return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge as exc:
            if started:
                raise
            await error_response(413, "body_too_large", exc.detail)(scope, receive, send)
