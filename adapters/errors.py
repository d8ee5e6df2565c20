"""The one exception tree for everything that goes wrong at or with a gateway.

    GatewayError
    ├── GatewayUnavailable      transport failure, timeout, 5xx: retryable       → 503
    ├── GatewayRefused          the gateway said no (4xx, business error)         → 502
    ├── GatewayProtocolError    unsigned/wrongly signed or nonsensical answer     → 502
    └── UnsupportedOperation    the request asks for something the gateway lacks  → 400
    WebhookError
    ├── WebhookSignatureError   missing, forged, stale or future signature        → gateway's reject
    └── WebhookPayloadError     verified but unusable content (wrong app, bad JSON)

Adapters translate SDK and HTTP exceptions into these at one boundary with ``raise … from exc``;
``service.problems`` is the one place that turns them into HTTP status codes.
"""

from __future__ import annotations


class GatewayError(Exception):
    """A gateway call did not give a usable answer."""

    retryable = False

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


class GatewayUnavailable(GatewayError):
    retryable = True


class GatewayRefused(GatewayError):
    pass


class GatewayProtocolError(GatewayError):
    pass


class UnsupportedOperation(GatewayError):
    """The request is valid in general but this gateway cannot do it (e.g. off-session charges)."""


class WebhookError(Exception):
    pass


class WebhookSignatureError(WebhookError):
    pass


class WebhookPayloadError(WebhookError):
    pass
