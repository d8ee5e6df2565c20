"""Request body limits, enforced while the body streams in, on every route.

Nothing in front of payrelay is assumed to limit bodies (the k8s manifests have no proxy), and a
webhook's body is read before its signature can be checked, so an unauthenticated client could
otherwise make payrelay hold any amount of memory. ``BodyLimit`` counts the bytes as the server
hands them over and raises :class:`BodyTooLarge` (``service.errors.TooLarge``: a 413) from ``receive`` once they
pass the route's limit, or at the first ``receive`` when the declared ``Content-Length`` already
does, without reading a byte. Each route answers it in its own error format (a 413 problem;
Cloudreve: its ``{"code": 41301}``): the middleware sits outside Starlette's exception handlers,
so the exception reaches them like any other. What is left unread, uvicorn discards without
keeping it.

Limits: ``PAYRELAY_MAX_BODY_BYTES`` caps every route (default 256 KiB, which webhooks get: Stripe
events carry whole objects and run to tens of KiB; Alipay and WeChat notifications are a few
KiB). ``/api`` and ``/cloudreve`` take at most 64 KiB of it: their requests are small by their
field rules (a transaction request is under 10 KiB at most).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import errors

REQUEST_BODY_BYTES = 64 * 1024  # /api, /cloudreve and everything that is not a webhook
_WEBHOOKS = "/webhooks/"


class BodyTooLarge(errors.TooLarge):
    def __init__(self, limit: int) -> None:
        super().__init__("body_too_large", f"the body must be at most {limit} bytes")


def limit_for(path: str, max_bytes: int) -> int:
    return max_bytes if path.startswith(_WEBHOOKS) else min(REQUEST_BODY_BYTES, max_bytes)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None  # the server refuses a malformed one
    return None


def _limited(receive: Receive, limit: int, declared: int | None) -> Receive:
    received = 0

    async def limited_receive() -> Message:
        nonlocal received
        if declared is not None and declared > limit:
            raise BodyTooLarge(limit)
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
        return message

    return limited_receive


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            receive = _limited(receive, limit_for(scope["path"], self.max_bytes), _declared_length(scope))
        await self.app(scope, receive, send)
