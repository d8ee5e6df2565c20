"""The OpenAPI 3.1 description of payrelay's HTTP surface, served at ``GET /openapi.json``.

The request schema states every field rule of ``service.validation`` that JSON Schema can say
(patterns, enums, lengths, required, no other fields); rules that depend on another field or on
the configuration (a currency's decimal places, https for Stripe, configured gateways, the
redirect host allow-list) are in the descriptions and answered with 400 problems. The response
schemas are those of ``service.views``, ``service.deliveries_api``, ``service.problems`` and the
Cloudreve bridge; tests check real answers against them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters import money, registry
from adapters.base import Adapter, RefundStatus, Status, WebhookReply
from adapters.registry import GATEWAY_TYPES
from service import keys, states
from service.listing import FLAGS
from service.settings import Settings
from service.states import PUBLIC, PaymentState
from service.validation import (
    CONTROLS,
    CURRENCY,
    MAX_DESCRIPTION,
    MAX_REASON,
    MAX_TRANSACTION_ID,
    MAX_URL,
    PAGE_SIZES,
    TRANSACTION_ID,
)

Schema = dict[str, Any]

PAYMENT_ID = f"^{keys.PAYMENT_ID.pattern}$"
_URL = r"^[hH][tT][tT][pP][sS]?://\S+$"  # scheme is case-insensitive (urlsplit lowers it)
_DATE_TIME = {"type": "string", "format": "date-time"}


def _whole(pattern: re.Pattern[str]) -> str:
    """A pattern the code uses with ``fullmatch``, anchored as JSON Schema needs it."""
    return f"^{pattern.pattern}$"


def _listed(words: Iterable[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    *rest, last = words
    return f"{', '.join(rest)} and {last}" if rest else last


def _adapters() -> list[type[Adapter]]:
    return [gateway.adapter() for gateway in registry.GATEWAYS]


def _which(has: Callable[[type[Adapter]], bool]) -> str:
    """The gateways whose adapter ``has`` a capability."""
    return _listed(adapter.gateway_type for adapter in _adapters() if has(adapter))


def _currency_rules() -> str:
    """The gateways that take a few currencies only, grouped by those currencies."""
    by_currencies: dict[tuple[str, ...], list[str]] = {}
    for adapter in _adapters():
        if adapter.currencies is not None and len(adapter.currencies) <= 3:
            by_currencies.setdefault(tuple(sorted(adapter.currencies)), []).append(adapter.gateway_type)
    rules = [f"{_listed(names)} take{'s' if len(names) == 1 else ''} {_listed(codes)} only"
             for codes, names in by_currencies.items()]
    return "; ".join(rules) + "."


def _step_rules() -> str:
    rules = []
    for adapter in _adapters():
        by_step: dict[str, list[str]] = {}
        for currency, step in sorted(adapter.amount_steps.items()):
            by_step.setdefault(money.to_major(step, currency), []).append(currency)
        rules += [f"{adapter.gateway_type} takes {_listed(codes)} only in steps of {step}"
                  for step, codes in by_step.items()]
    return " ".join(f"{rule}." for rule in rules)


def _moves() -> str:
    """The state machine as the storage app sees it (``service.states``), the late move apart."""
    shown = [state for state in states.PaymentState if states.public(state) is state]
    moves = []
    for state in shown:
        targets = [t.value for t in states.PaymentState if t in states.MOVES[state] and (state, t) != states.LATE]
        if targets:
            moves.append(f"{state.value} → {' | '.join(targets)}")
    late = f"{states.LATE[0].value} → {states.LATE[1].value} only on verified late payment (latePayment)"
    return "; ".join(moves) + f". {late}."


def _refund_moves() -> str:
    moves = [f"{state.value} → {' | '.join(t.value for t in RefundStatus if t in targets)}"
             for state, targets in states.REFUND_MOVES.items() if targets]
    return "; ".join(moves) + " (only on verified evidence that the refund was returned)."


def _reply_schema(reply: WebhookReply) -> Schema:
    """A gateway's acknowledgement or refusal: JSON objects with the fields it sends, or text."""
    if reply.media_type == "application/json":
        return {"type": "object", "required": sorted(json.loads(reply.body))}
    return {"type": "string"}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {**schema, "type": [schema["type"], "null"]}


def _amount_request(amount_unit: str) -> Schema:
    if amount_unit == "minor":
        return {
            "description": "Integer minor units (PAYRELAY_AMOUNT_UNIT=minor), as a number or a string.",
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": money.MAX_MINOR - 1},
                {"type": "string", "pattern": _whole(money.INTEGER)},
            ],
            "examples": [2500],
        }
    return {
        "type": "string",
        "pattern": _whole(money.DECIMAL),
        "description": "A decimal in the currency's major unit: no sign, exponent or blanks, not zero, "
                       "at most as many fraction digits as the currency has (JPY 0, USD 2, BHD 3). "
                       + _step_rules(),
        "examples": ["25.00"],
    }


def _amount_response(amount_unit: str) -> Schema:
    if amount_unit == "minor":
        return {"type": "string", "pattern": _whole(money.INTEGER), "description": "Integer minor units."}
    return {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$", "description": "In the currency's major unit."}


def _sum_response(amount_unit: str) -> Schema:
    """A sum of amounts, which may be nothing yet."""
    if amount_unit == "minor":
        return {"type": "string", "pattern": "^(0|[1-9][0-9]*)$", "description": "Integer minor units."}
    return _amount_response(amount_unit)


def _transaction_request(amount_unit: str) -> Schema:
    url = {"type": "string", "maxLength": MAX_URL, "pattern": _URL}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["transactionId", "amount", "currency", "date", "paymentGatewayType",
                     "completePayRedirectUrl", "cancelPayRedirectUrl", "onlineScenario"],
        "properties": {
            "transactionId": {
                "type": "string", "minLength": 1, "maxLength": MAX_TRANSACTION_ID, "pattern": _whole(TRANSACTION_ID),
                "description": f"The business transaction's id: 1–{MAX_TRANSACTION_ID} printable ASCII characters, "
                               "no spaces. "
                               "Unique per API client: the same id again answers the same payment.",
            },
            "amount": _amount_request(amount_unit),
            "currency": {"type": "string", "enum": sorted(money.EXPONENTS),
                         "description": "ISO 4217, upper case. " + _currency_rules()},
            "date": {"type": "string", "description": "The business transaction's date: ISO 8601 date or "
                                                      "date-time. Stored and echoed.",
                     "examples": ["2026-11-21", "2026-11-21T10:00:00+08:00"]},
            "paymentGatewayType": {"type": "string", "enum": list(GATEWAY_TYPES),
                                   "description": "A type this payrelay has not configured: 400 "
                                                  "gateway_not_configured."},
            "completePayRedirectUrl": {**url, "description": "Absolute http(s) URL the customer returns to "
                                                             "after paying; https for "
                                                             f"{_which(lambda a: a.requires_https_redirects)}; "
                                                             "its host must be in PAYRELAY_REDIRECT_HOSTS when set."},
            "cancelPayRedirectUrl": {**url, "description": "Like completePayRedirectUrl, for a customer who "
                                                           "gives up."},
            "onlineScenario": {"type": "boolean", "description": "true: the customer pays now at paymentUrl. "
                                                                 "false: an off-session charge on the method saved "
                                                                 f"earlier ({_which(lambda a: a.supports_offline)} "
                                                                 "only)."},
            "supportOfflineScenario": {"type": ["boolean", "null"],
                                       "description": "Save the payment method for off-session charges "
                                                      f"({_which(lambda a: a.supports_offline)} only). "
                                                      "null: false."},
            "customerIdentifier": {"type": ["string", "null"],
                                   "description": "A phone number, an email address or a UUID; an email for "
                                                  f"{_which(lambda a: a.customer_must_be_email)}. Required with "
                                                  "supportOfflineScenario or onlineScenario false."},
            "description": {"type": ["string", "null"], "maxLength": MAX_DESCRIPTION,
                            "pattern": f"^[^{CONTROLS}]*$",
                            "description": "Shown to the customer, cut to each gateway's limit; no control "
                                           "characters."},
            "notifyUrl": {**_nullable(url), "description": "Overrides the client's notification URL "
                                                           "(same host allow-list as the redirects)."},
        },
    }


def _created() -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["paymentUrl", "paymentId", "expireTime", "status"],
        "properties": {
            "paymentUrl": {"type": ["string", "null"], "description": "Where the customer pays (WeChat: a "
                                                                      "weixin:// code URL to show as a QR code)."},
            "paymentId": {"type": "string", "pattern": PAYMENT_ID},
            "expireTime": {"type": "integer", "minimum": 0, "description": "Seconds until the payment expires "
                                                                           "(0 once it is final)."},
            "status": _ref("Status"),
        },
    }


def _payment(amount_unit: str) -> Schema:
    created = _created()
    return {
        "type": "object",
        "additionalProperties": False,
        "required": [*created["required"], "transactionId", "amount", "currency", "paymentGatewayType",
                     "description", "customerIdentifier", "date", "expiresAt", "createdAt", "updatedAt",
                     "paidAt", "gatewayReference", "failureReason", "latePayment", "integrityError", "version",
                     "refundedAmount", "refundingAmount"],
        "properties": {
            **created["properties"],
            "transactionId": {"type": "string"},
            "amount": _amount_response(amount_unit),
            "currency": {"type": "string", "pattern": _whole(CURRENCY)},
            "paymentGatewayType": {"type": "string", "enum": list(GATEWAY_TYPES)},
            "description": {"type": "string"},
            "customerIdentifier": {"type": ["string", "null"]},
            "date": {"type": "string"},
            "expiresAt": _DATE_TIME,
            "createdAt": _DATE_TIME,
            "updatedAt": _DATE_TIME,
            "paidAt": _nullable(_DATE_TIME),
            "gatewayReference": {"type": ["string", "null"], "description": "Stripe's Checkout Session id; "
                                                                            "Alipay's trade_no or WeChat's "
                                                                            "transaction_id once known."},
            "failureReason": {"type": ["string", "null"]},
            "latePayment": {"type": "boolean", "description": "Paid after it was closed; the storage app "
                                                              "decides whether to refund."},
            "integrityError": {"type": "boolean", "description": "A verified gateway event disagreed on "
                                                                 "amount or currency."},
            "version": {"type": "integer", "minimum": 0, "description": "Status transitions so far."},
            "refundedAmount": {**_sum_response(amount_unit), "description": "The sum of its succeeded refunds."},
            "refundingAmount": {**_sum_response(amount_unit), "description": "The sum of its refunds in flight."},
        },
    }


def _refund_request(amount_unit: str) -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["refundId"],
        "properties": {
            "refundId": {"type": "string", "minLength": 1, "maxLength": MAX_TRANSACTION_ID,
                         "pattern": _whole(TRANSACTION_ID),
                         "description": "The storage app's id for this refund, unique per payment, and its "
                                        "idempotency key: the same refundId again answers the same refund "
                                        "(409 refund_conflict if amount or reason differ)."},
            "amount": {**_amount_request(amount_unit),
                       "description": "In the payment's currency, like the payment's amount; absent: what "
                                      "remains (refunds in flight count)."},
            "reason": {"type": ["string", "null"], "maxLength": MAX_REASON, "pattern": f"^[^{CONTROLS}]*$"},
        },
    }


def _refund(amount_unit: str) -> Schema:
    nullable_text = {"type": ["string", "null"]}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["refundId", "paymentId", "amount", "currency", "reason", "status", "gatewayReference",
                     "failureReason", "createdAt", "updatedAt"],
        "properties": {
            "refundId": {"type": "string"},
            "paymentId": {"type": "string", "pattern": PAYMENT_ID},
            "amount": _amount_response(amount_unit),
            "currency": {"type": "string", "pattern": _whole(CURRENCY)},
            "reason": nullable_text,
            "status": {"type": "string", "enum": [status.value for status in RefundStatus],
                       "description": _refund_moves()},
            "gatewayReference": {**nullable_text, "description": "The gateway's own id of the refund, once known."},
            "failureReason": nullable_text,
            "createdAt": _DATE_TIME,
            "updatedAt": _DATE_TIME,
        },
    }


def _problem() -> Schema:
    return {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail", "code", "traceId"],
        "properties": {
            "type": {"type": "string", "format": "uri-reference"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "code": {"type": "string", "pattern": "^[a-z0-9_]+$", "description": "Machine-readable cause."},
            "param": {"type": "string", "description": "The field or parameter at fault."},
            "traceId": {"type": "string", "description": "The request's trace-id."},
        },
    }


def _delivery() -> Schema:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["id", "eventId", "type", "version", "state", "attempts", "createdAt", "lastAttemptAt",
                     "nextAt", "lastStatusCode", "lastError", "url"],
        "properties": {
            "id": {"type": "string"},
            "eventId": {"type": "string", "description": "The notification's id (evt_…); receivers dedupe on it."},
            "type": {"type": ["string", "null"],
                     "description": "transaction.<status>, refund.<status>, or the Cloudreve callback."},
            "version": {"type": ["integer", "null"]},
            "state": {"type": ["string", "null"], "enum": ["pending", "delivered", "dead", None]},
            "attempts": {"type": "integer", "minimum": 0},
            "createdAt": _nullable(_DATE_TIME),
            "lastAttemptAt": _nullable(_DATE_TIME),
            "nextAt": {**_nullable(_DATE_TIME), "description": "When the next attempt is due (pending only)."},
            "lastStatusCode": {"type": ["integer", "null"]},
            "lastError": {"type": ["string", "null"]},
            "url": {"type": ["string", "null"]},
        },
    }


def _components(amount_unit: str) -> Schema:
    return {
        "schemas": {
            "Status": {"type": "string", "enum": [status.value for status in Status], "description": _moves()},
            "TransactionRequest": _transaction_request(amount_unit),
            "CreatedPayment": _created(),
            "Payment": _payment(amount_unit),
            "Problem": _problem(),
            "Delivery": _delivery(),
            "RefundRequest": _refund_request(amount_unit),
            "Refund": _refund(amount_unit),
            "Refunds": {"type": "object", "additionalProperties": False, "required": ["paymentId", "data"],
                        "properties": {"paymentId": {"type": "string", "pattern": PAYMENT_ID},
                                       "data": {"type": "array", "items": _ref("Refund")}}},
            "Deliveries": {"type": "object", "additionalProperties": False, "required": ["paymentId", "data"],
                           "properties": {"paymentId": {"type": "string", "pattern": PAYMENT_ID},
                                          "data": {"type": "array", "items": _ref("Delivery")}}},
            "PaymentPage": {
                "type": "object", "additionalProperties": False, "required": ["payments", "pagination"],
                "properties": {
                    "payments": {"type": "array", "items": _ref("Payment")},
                    "pagination": {
                        "type": "object", "additionalProperties": False,
                        "required": ["page_size", "next_token", "is_cursor"],
                        "properties": {"page_size": {"type": "integer"},
                                       "next_token": {"type": "string",
                                                      "description": "next_page_token of the next page; "
                                                                     "empty: this is the last"},
                                       "is_cursor": {"const": True}}}}},
            "Events": {"type": "object", "additionalProperties": False, "required": ["paymentId", "data"],
                       "properties": {"paymentId": {"type": "string", "pattern": PAYMENT_ID},
                                      "data": {"type": "array", "items": {
                                          "type": "object", "required": ["at", "type"],
                                          "properties": {"at": {"type": "string", "format": "date-time"},
                                                         "type": {"type": "string"}},
                                          "additionalProperties": {"type": "string"}}}}},
            "CloudreveAnswer": {
                "type": "object",
                "description": "Always HTTP 200: code 0 with data, or a non-zero code with error.",
                "required": ["code"],
                "properties": {"code": {"type": "integer"}, "data": {"type": "string"},
                               "error": {"type": "string"}},
                "oneOf": [
                    {"properties": {"code": {"const": 0}}, "required": ["data"]},
                    {"properties": {"code": {"not": {"const": 0}}}, "required": ["error"]},
                ],
            },
        },
        "headers": {
            "TraceId": {"description": "The request's trace-id, or a new UUID.", "required": True,
                        "schema": {"type": "string"}},
        },
        "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer",
                                       "description": "An API key from PAYRELAY_API_KEYS or the clients file."}},
        "parameters": {
            "paymentId": {"name": "paymentId", "in": "path", "required": True,
                          "schema": {"type": "string", "pattern": PAYMENT_ID}},
            "traceId": {"name": "trace-id", "in": "header", "required": False,
                        "schema": {"type": "string"}, "description": "Echoed; invalid ones are replaced."},
        },
    }


_REASONS = {
    200: "OK", 204: "No content", 400: "Invalid request", 401: "No or bad API key", 404: "Not found",
    409: "Conflict", 413: "Body too large", 415: "Not JSON", 502: "The gateway refused or answered nonsense",
    503: "The gateway or Redis is unreachable",
}
_TRACE = {"trace-id": {"$ref": "#/components/headers/TraceId"}}


def _json(schema: Schema, description: str = "OK") -> Schema:
    return {"description": description, "headers": _TRACE, "content": {"application/json": {"schema": schema}}}


def _problems(*statuses: int) -> dict[str, Schema]:
    return {str(status): {"description": _REASONS[status], "headers": _TRACE,
                          "content": {"application/problem+json": {"schema": _ref("Problem")}}}
            for status in statuses}


def _api(summary: str, ok: Schema, *errors: int, **extra: Any) -> Schema:
    return {"summary": summary, "security": [{"apiKey": []}],
            "parameters": [{"$ref": "#/components/parameters/traceId"}, *extra.pop("parameters", [])],
            "responses": {"200": ok, **_problems(401, *errors)}, **extra}


def _list_parameters() -> list[Schema]:
    """The listing's query parameters, from the code that reads them (service.validation)."""
    def query(name: str, schema: Schema, description: str) -> Schema:
        return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}

    instant = {"type": "string", "format": "date-time"}
    return [
        query("page_size", {"type": "integer", "minimum": PAGE_SIZES.start, "maximum": PAGE_SIZES.stop - 1,
                            "default": 50}, "payments a page"),
        query("order_direction", {"enum": ["desc", "asc"], "default": "desc"}, "newest or oldest first"),
        query("next_page_token", {"type": "string"}, "the next_token of the page before; empty: the first"),
        query("status", {"enum": [state.value for state in PaymentState if state not in PUBLIC]}, "only these"),
        query("paymentGatewayType", {"enum": sorted(GATEWAY_TYPES)}, "only these"),
        query("createdFrom", instant, "created at or after (with its offset)"),
        query("createdTo", instant, "created before (with its offset)"),
        query("flag", {"enum": list(FLAGS)}, "only payments with this flag"),
    ]


def _paths() -> dict[str, Schema]:
    payment_id = {"$ref": "#/components/parameters/paymentId"}
    payment = _json(_ref("Payment"), "The payment")
    gateway_errors = (502, 503)
    sync = {"name": "sync", "in": "query", "required": False,
            "description": "true: ask the gateway first (true, false, 1, 0; any case).",
            "schema": {"type": "string", "pattern": "^([tT][rR][uU][eE]|[fF][aA][lL][sS][eE]|0|1)$"}}
    paths: dict[str, Schema] = {
        "/api/transactions": {
            "post": _api(
                "Create a payment, or idempotently answer the one that exists",
                _json(_ref("CreatedPayment"), "The payment to pay at paymentUrl"),
                400, 409, 413, 415, *gateway_errors,
                operationId="createTransaction",
                description="The same client and transactionId with the same fields answer the same payment "
                            "while it is waiting, processing or succeeded (409 if a field differs); a new "
                            "payment once the latest one failed or closed.",
                requestBody={"required": True,
                             "content": {"application/json": {"schema": _ref("TransactionRequest")}}},
            ),
            "get": _api(
                "The latest payment of a business transaction; without transactionId, the client's "
                "payments, a page",
                _json({"oneOf": [_ref("Payment"), _ref("PaymentPage")]},
                      "With transactionId: its payment; without: a page of payments"),
                400, 404, 503,
                operationId="findTransaction",
                description="Pages follow one another by next_page_token and stay stable while payments "
                            "are written: none is skipped or repeated. Unknown parameters are refused.",
                parameters=[{"name": "transactionId", "in": "query", "required": False,
                             "schema": {"type": "string", "minLength": 1}}, *_list_parameters()],
            ),
        },
        "/api/transactions/{paymentId}": {
            "get": _api("A payment", payment, 400, 404, *gateway_errors, operationId="getTransaction",
                        parameters=[payment_id, sync]),
        },
        "/api/transactions/{paymentId}/events": {
            "get": _api("The payment's timeline, oldest first", _json(_ref("Events")), 404, 503,
                        operationId="listEvents", parameters=[payment_id],
                        description="Created, every transition with its source and the gateway's raw state, "
                                    "words that changed nothing and why, integrity errors, refunds, delivery "
                                    "attempts, operators' actions; the newest entries are kept."),
        },
        "/api/transactions/{paymentId}/close": {
            "post": _api("Close a payment now, at the gateway too", _json(_ref("Payment"), "The closed payment"),
                         404, 409, *gateway_errors, operationId="closeTransaction", parameters=[payment_id],
                         description="Asks the gateway first: a paid payment answers 409 payment_succeeded."),
        },
        "/api/transactions/{paymentId}/refunds": {
            "post": _api(
                "Refund a succeeded payment, fully or in part, or idempotently answer the refund that exists",
                _json(_ref("Refund"), "The refund: processing until the gateway says how it ended"),
                400, 404, 409, 413, 415, 503, operationId="createRefund", parameters=[payment_id],
                description="Refused before any gateway call, and not kept: a payment that is not succeeded, "
                            "an amount over what remains (refunds in flight count), a refund outside the "
                            "gateway's limits. A gateway that refuses ends the refund failed; one that does "
                            "not answer leaves it processing until payrelay learns the outcome.",
                requestBody={"required": True, "content": {"application/json": {"schema": _ref("RefundRequest")}}},
            ),
            "get": _api("The payment's refunds, oldest first", _json(_ref("Refunds")), 404, 503,
                        operationId="listRefunds", parameters=[payment_id]),
        },
        "/api/transactions/{paymentId}/refunds/{refundId}": {
            "get": _api("A refund", _json(_ref("Refund")), 400, 404, *gateway_errors, operationId="getRefund",
                        parameters=[payment_id, {"name": "refundId", "in": "path", "required": True,
                                                 "schema": {"type": "string"}}, sync]),
        },
        "/api/transactions/{paymentId}/deliveries": {
            "get": _api("The payment's notifications, oldest first", _json(_ref("Deliveries")), 404, 503,
                        operationId="listDeliveries", parameters=[payment_id]),
        },
        "/api/transactions/{paymentId}/deliveries/{deliveryId}/retry": {
            "post": _api("Send a pending or dead notification again, now", _json(_ref("Delivery")), 404, 409, 503,
                         operationId="retryDelivery",
                         parameters=[payment_id, {"name": "deliveryId", "in": "path", "required": True,
                                                  "schema": {"type": "string"}}]),
        },
    }
    for extension, media_type in (("svg", "image/svg+xml"), ("png", "image/png")):
        paths[f"/api/transactions/{{paymentId}}/qrcode.{extension}"] = {"get": _api(
            f"The payment's code URL as a QR code ({extension.upper()}): "
            f"{_which(lambda a: a.payment_url_is_a_code)}",
            {"description": "The QR code", "headers": _TRACE,
             "content": {media_type: {"schema": {"type": "string", "format": "binary"}}}},
            404, operationId=f"qrcode{extension.title()}", parameters=[payment_id],
            description="404 no_qr_code for payments of other gateways.",
        )}
    for entry in registry.GATEWAYS:
        adapter = entry.adapter()
        ok, refused = adapter.webhook_ok(), adapter.webhook_fail(400, "why")
        refusal = {"headers": _TRACE, "content": {refused.media_type: {"schema": _reply_schema(refused)}}}
        acknowledged: Schema = {"headers": _TRACE}
        if ok.media_type:
            acknowledged["content"] = {ok.media_type: {"schema": _reply_schema(ok)}}
        responses: dict[str, Schema] = {
            str(ok.status_code): {
                "description": "Verified and applied (or a duplicate, stale or unknown event: acknowledged)",
                **acknowledged},
            "400": {"description": "Not verified or not understood, in the gateway's format", **refusal},
            "503": {"description": "Redis unavailable: the gateway retries later", **refusal},
            **_problems(404),
        }
        paths[f"/webhooks/{entry.webhook}"] = {"post": {
            "summary": f"{entry.label} webhook: verified, deduplicated, applied; answered in {entry.label}'s format",
            "operationId": f"{entry.webhook}Webhook",
            "description": "404 when that gateway is not configured.",
            "requestBody": {"required": True, "content": {"*/*": {"schema": {}}}},
            "responses": responses,
        }}
    gateway = {"name": "paymentGatewayType", "in": "path", "required": True,
               "schema": {"type": "string", "enum": list(GATEWAY_TYPES)}}
    site_headers = [
        {"name": "X-Cr-Site-Id", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": "X-Cr-Site-Url", "in": "header", "required": False, "schema": {"type": "string"}},
    ]
    cloudreve_answer = _json(_ref("CloudreveAnswer"), "Cloudreve's answer (errors too: non-zero code)")
    paths["/cloudreve/{paymentGatewayType}"] = {
        "post": {
            "summary": "Cloudreve custom payment provider: create an order → code 0, data = paymentUrl",
            "operationId": "cloudreveCreate",
            "parameters": [gateway, *site_headers,
                           {"name": "Authorization", "in": "header", "required": True,
                            "description": "Bearer Cr <signature>:<expires>, signed with PAYRELAY_CLOUDREVE_KEY",
                            "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["name", "order_no", "notify_url", "amount", "currency"],
                "properties": {"name": {"type": "string"}, "order_no": {"type": "string"},
                               "notify_url": {"type": "string"},
                               "amount": {"type": "integer", "minimum": 1, "description": "Minor units."},
                               "currency": {"type": "string"}}}}}},
            "responses": {"200": cloudreve_answer},
        },
        "get": {
            "summary": "Cloudreve custom payment provider: query → code 0, data PAID once paid",
            "operationId": "cloudreveQuery",
            "description": "Only the path is signed; no X-Cr-* header is needed: the order is found by order_no.",
            "parameters": [gateway,
                           {"name": "order_no", "in": "query", "required": True, "schema": {"type": "string"}},
                           {"name": "sign", "in": "query", "required": True, "schema": {"type": "string"},
                            "description": "<signature>:<expires>, signed with PAYRELAY_CLOUDREVE_KEY"}],
            "responses": {"200": cloudreve_answer},
        },
    }
    paths["/healthz"] = {"get": {"summary": "Liveness", "operationId": "healthz", "responses": {"200": _json(
        {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}})}}}
    readiness = {"type": "object", "required": ["status", "checks"], "properties": {
        "status": {"enum": ["ready", "unavailable"]},
        "checks": {"type": "object", "required": ["redis"], "additionalProperties": {"type": "boolean"},
                   "description": "redis, and worker:<name> for each background worker of this process"}}}
    paths["/readyz"] = {"get": {"summary": "Readiness: Redis answers, workers tick", "operationId": "readyz",
                                "responses": {"200": _json(readiness),
                                              "503": _json(readiness, "Not ready")}}}
    paths["/metrics"] = {"get": {"summary": "Prometheus metrics", "operationId": "metrics", "responses": {
        "200": {"description": "Prometheus text format", "headers": _TRACE,
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}}
    paths["/openapi.json"] = {"get": {"summary": "This document", "operationId": "openapi", "responses": {
        "200": _json({"type": "object", "required": ["openapi", "info", "paths"]})}}}
    return paths


def document(settings: Settings) -> Schema:
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "payrelay",
            "version": "0.1.0",
            "summary": "Stripe Checkout, Alipay page pay and WeChat Pay Native behind one API",
            "description": "Errors are RFC 9457 problem details (application/problem+json) with code, param "
                           "(the field at fault) and traceId. Every answer carries a trace-id header.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": settings.public_url}],
        "paths": _paths(),
        "components": _components(settings.amount_unit),
    }


def route(settings: Settings) -> Route:
    """``GET /openapi.json``; the document is built once per app."""
    body = document(settings)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(body)

    return Route("/openapi.json", openapi_json, methods=["GET"])
