"""The domain's refusals: what payrelay will not do, in its own words, raised wherever it is
found (validation, the payment service, the APIs) and turned into an HTTP problem (or a Cloudreve
error code) in one place, ``service.problems``.

    PayrelayError
    ├── InvalidRequest          a field, query parameter or body that breaks the rules
    ├── Unauthorized            no API key, or not a valid one
    ├── NotFound                no such payment (also: another client's), delivery or route
    ├── Conflict                the same id with other fields; a payment not in a state for it
    ├── TooLarge                a body over its route's limit
    ├── UnsupportedMediaType    a body that is not JSON
    ├── NotConfigured           the payment's gateway is not configured in this process
    └── InternalError           a bug: payrelay failed where it should not

Gateway failures are ``adapters.errors.GatewayError``; Redis out of reach is
``service.store.StoreUnavailable``.
"""

from __future__ import annotations


class PayrelayError(Exception):
    def __init__(self, code: str, detail: str, param: str | None = None) -> None:
        super().__init__(detail)
        self.code = code  # machine-readable, stable: urn:payrelay:problem:<code>
        self.detail = detail  # for a person; never a secret
        self.param = param  # the field at fault, where one is


class InvalidRequest(PayrelayError):
    pass


class Unauthorized(PayrelayError):
    pass


class NotFound(PayrelayError):
    pass


class Conflict(PayrelayError):
    pass


class TooLarge(PayrelayError):
    pass


class UnsupportedMediaType(PayrelayError):
    pass


class NotConfigured(PayrelayError):
    pass


class InternalError(PayrelayError):
    pass
