"""The one exception tree for everything that goes wrong at or with a gateway.

    GatewayError
    ├── GatewayUnavailable      transport failure, timeout, 5xx: retryable       → 503
    ├── GatewayRefused          the gateway said no (4xx, business error)         → 502
    ├── GatewayProtocolError    unsigned/wrongly signed or nonsensical answer     → 502
    └── UnsupportedOperation    the request asks for something the gateway lacks  → 400
    WebhookError
    ├── WebhookSignatureError   missing, forged, stale or future signature        → gateway's reject
    ├── WebhookPayloadError     verified but unusable content (bad JSON, no payment id)
    └── WebhookMismatch         verified, but about another merchant or app      → acknowledged,
                                than ours: no evidence about our payments           nothing changes

Adapters translate SDK and HTTP exceptions into these at one boundary with ``raise … from exc``;
``service.problems`` is the one place that turns them into HTTP status codes.
"""

from __future__ import annotations


class GatewayError(Exception):
    """A gateway call did not give a usable answer."""

    retryable = False
    # whether the gateway may have done what it was asked all the same: then the same request
    # may be sent again only under the same identity, never as a new order
    outcome_unknown = False

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


class GatewayUnavailable(GatewayError):
    retryable = True
    outcome_unknown = True


class GatewayRefused(GatewayError):
    pass


class GatewayProtocolError(GatewayError):
    outcome_unknown = True  # it answered, but what it did cannot be read from the answer


class UnsupportedOperation(GatewayError):
    """The request is valid in general but this gateway cannot do it (e.g. off-session charges)."""


class WebhookError(Exception):
    pass


class WebhookSignatureError(WebhookError):
    pass


class WebhookPayloadError(WebhookError):
    pass


class WebhookMismatch(WebhookError):
    """Verified, but its merchant or app ids are not ours: it says nothing about our payments.
    Acknowledged (sending it again would not change that), counted, nothing changes."""
