"""What the contract suite needs to know about each gateway, one block per gateway, keyed by
``paymentGatewayType``. ``GATEWAYS`` is the only list of gateways in the tests, in the order of
``adapters.registry``, which it must cover: a gateway added there fails here until its facts are.

Each fact is data or a small function: how to make a test payment there, how to point an
adapter at another server, how to forge its webhooks, its acknowledgements, its status tables,
the secrets it must never show. The scenarios themselves are in tests/test_contract.py.
"""

from __future__ import annotations

import json
import time
import types
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

import httpx

from adapters import money, registry
from adapters.alipay import transformers as alipay_tx
from adapters.alipay.adapter import AlipayAdapter
from adapters.alipay.config import AlipayConfig
from adapters.base import Adapter, CreateRequest, Money, PaymentRef, Status, WebhookReply, map_state
from adapters.config import Secret
from adapters.stripe import adapter as stripe_adapter
from adapters.stripe import transformers as stripe_tx
from adapters.stripe.adapter import StripeAdapter
from adapters.transport import AiohttpTransport
from adapters.wechat import transformers as wechat_tx
from adapters.wechat.adapter import WechatAdapter
from sandbox.keys import rsa_pair
from tests.fixtures_alipay import alipay_config
from tests.fixtures_stripe import PUBLIC_URL, stripe_config
from tests.fixtures_wechat import stranger_key, wechat_config

Forged = tuple[dict[str, str], bytes, str | None]  # headers, body, what the refusal must say (regex)


@dataclass(frozen=True)
class StateTable:
    """A gateway status table: read-only, covering the documented states, raising on others."""

    name: str
    table: Mapping[str, Status]
    documented: frozenset[str]  # states the gateway documents (the table may hold compounds too)
    exact: bool  # the table holds exactly the documented states
    expected: Mapping[str, Status]  # what some (or all) of them map to
    lookup: Callable[[str], Status]  # the one helper the adapter looks states up through
    unknown: str  # a state the gateway does not document


@dataclass(frozen=True)
class Gateway:
    gateway_type: str  # paymentGatewayType
    name: str  # fixture prefix (stripe_adapter, stripe_emulator) and webhook path
    money: Money  # what a test payment costs there
    create_calls_gateway: bool  # Alipay page pay signs a URL offline: its first call is a query
    open: Callable[[Adapter, Any, CreateRequest], Awaitable[PaymentRef]]  # a waiting order there
    at_gateway: Callable[[Any], Any]  # what the emulator holds, to see an outage changed nothing
    outage_code: str | None  # the error code an outage answers with, where the gateway gives one
    outage_match: str | None
    adapter_at: Callable[[Any, str], Adapter]  # the adapter, its API at another base URL
    timeout_s: float  # that adapter's read timeout
    timeout_match: str | None
    unreachable_match: str | None
    forgeries: tuple[str, ...]
    forge: Callable[[Any, PaymentRef, str], Forged]  # "genuine" or one of the forgeries
    ack_ok: tuple[int, Any, str | None]  # status, body (JSON decoded), media type
    ack_fail: tuple[tuple[int, str], tuple[int, Any, str | None]]  # webhook_fail's arguments → reply
    tables: tuple[StateTable, ...]
    secrets: Callable[[Any], tuple[str, ...]]  # secret text of the emulator's config
    shown: Callable[[Adapter], str]  # everything of the adapter that may end up in a log
    wrong_credentials: Callable[[Any], tuple[Adapter, str, str]]  # adapter, refusal code, its secret

    def request(self, **changes: Any) -> CreateRequest:
        fields: dict[str, Any] = {
            "payment_id": f"pr_00{time.time_ns() % 10**24:024d}",
            "amount": self.money,
            "description": "Pro membership · 10 GB 容量包",
            "complete_url": "https://shop.example/done",
            "cancel_url": "https://shop.example/cancel",
            "expires_at": int(time.time()) + 1800,
            "customer": "buyer@example.com",
        }
        return CreateRequest(**(fields | changes))

    def ref(self, request: CreateRequest, reference: str | None = None) -> PaymentRef:
        return PaymentRef(request.payment_id, reference, request.amount)


def decoded(reply: WebhookReply) -> tuple[int, Any, str | None]:
    body = json.loads(reply.body) if reply.media_type == "application/json" else reply.body
    return reply.status_code, body, reply.media_type


# -- Stripe Checkout (Connect) ---------------------------------------------------------------------

async def _stripe_open(adapter: Adapter, emulator: Any, request: CreateRequest) -> PaymentRef:
    created = await adapter.create(request)
    assert created.payment_url and created.gateway_reference
    return PaymentRef(request.payment_id, created.gateway_reference, request.amount)


def _stripe_forge(emulator: Any, ref: PaymentRef, kind: str) -> Forged:
    session = ref.gateway_reference or ""
    now = int(time.time())
    changes: dict[str, Any] = {"stale": {"timestamp": now - 301}, "future": {"timestamp": now + 301},
                               "wrong_key": {"secret": "whsec_not_the_one"}}.get(kind, {})
    body, headers = emulator.signed_event("checkout.session.completed", session, **changes)
    if kind == "tampered":
        body = body.replace(b'"amount_total": 2500', b'"amount_total": 1')
    elif kind == "missing":
        del headers["Stripe-Signature"]
    elif kind == "garbled":
        headers["Stripe-Signature"] = "t=abc,v1=zzz"
    elif kind == "not_utf8":
        body += b"\xff"
    return headers, body, None


def _stripe_wrong_credentials(emulator: Any) -> tuple[Adapter, str, str]:
    wrong = "sk_test_" + "w" * 30
    adapter = StripeAdapter(stripe_config(emulator, secret_key=Secret(wrong)), PUBLIC_URL, AiohttpTransport())
    return adapter, "authentication_error", wrong


_STRIPE_PAYMENTS = {"paid", "unpaid", "no_payment_required"}

STRIPE = Gateway(
    gateway_type="stripe-connect",
    name="stripe",
    money=Money(2500, "USD"),
    create_calls_gateway=True,
    open=_stripe_open,
    at_gateway=lambda e: (len(e.sessions), e.calls["close"]),
    outage_code=None,
    outage_match=None,
    adapter_at=lambda e, url: StripeAdapter(stripe_config(e, api_base=url), PUBLIC_URL, AiohttpTransport()),
    timeout_s=stripe_adapter.TIMEOUT,
    timeout_match=None,
    unreachable_match=None,
    forgeries=("tampered", "stale", "future", "missing", "wrong_key", "garbled", "not_utf8"),
    forge=_stripe_forge,
    ack_ok=(200, {"received": True}, "application/json"),
    ack_fail=((400, "bad signature"), (400, {"error": "bad signature"}, "application/json")),
    tables=(
        StateTable("sessions", stripe_tx.SESSION_STATES,
                   frozenset({"open", "expired"} | {f"complete/{p}" for p in _STRIPE_PAYMENTS}), False,
                   {"open": Status.WAITING, "complete/paid": Status.SUCCEEDED,
                    "complete/unpaid": Status.PROCESSING, "expired": Status.CLOSED},
                   lambda s: map_state(stripe_tx.SESSION_STATES, s, "Stripe"), "something_new"),
        StateTable("intents", stripe_tx.INTENT_STATES,
                   frozenset({"requires_payment_method", "requires_confirmation", "requires_action", "processing",
                              "requires_capture", "canceled", "succeeded"}), True, {},
                   lambda s: map_state(stripe_tx.INTENT_STATES, s, "Stripe"), "something_new"),
        StateTable("events", stripe_tx.EVENT_STATES,
                   frozenset({f"checkout.session.completed/{p}" for p in _STRIPE_PAYMENTS}), False,
                   {"checkout.session.async_payment_failed": Status.FAILED},
                   lambda s: map_state(stripe_tx.EVENT_STATES, s, "Stripe"), "something_new"),
    ),
    secrets=lambda e: (e.secret_key, e.webhook_secret),
    shown=repr,
    wrong_credentials=_stripe_wrong_credentials,
)


# -- Alipay page pay -------------------------------------------------------------------------------

async def _alipay_open(adapter: Adapter, emulator: Any, request: CreateRequest) -> PaymentRef:
    created = await adapter.create(request)
    async with httpx.AsyncClient(follow_redirects=True) as client:  # the cashier creates the trade
        assert (await client.get(created.payment_url or "")).status_code == 200
    return PaymentRef(request.payment_id, None, request.amount)


def _alipay_forge(emulator: Any, ref: PaymentRef, kind: str) -> Forged:
    if kind == "wrong_key":
        emulator.forge_signatures = True
    form = emulator.signed_notification(ref.payment_id, "TRADE_SUCCESS")
    changed = {"tampered": form | {"total_amount": "0.01"},
               "missing": {k: v for k, v in form.items() if k != "sign"},
               "garbled": form | {"sign": "abc"},
               "rsa1": form | {"sign_type": "RSA"}}.get(kind, form)
    return {}, urlencode(changed).encode(), "does not verify" if kind == "wrong_key" else None


def _alipay_at(emulator: Any, url: str, *, key: Secret | None = None) -> AlipayAdapter:
    config = alipay_config(emulator)
    return AlipayAdapter(AlipayConfig(config.app_id, key or config.private_key, config.alipay_public_key,
                                      url + "/gateway.do"), "http://127.0.0.1:9", AiohttpTransport(), timeout=0.3)


def _alipay_wrong_credentials(emulator: Any) -> tuple[Adapter, str, str]:
    wrong = rsa_pair()[0]
    adapter = _alipay_at(emulator, emulator.base_url, key=Secret(wrong))
    return adapter, "isv.invalid-signature", wrong.splitlines()[1]


ALIPAY = Gateway(
    gateway_type="alipay-page",
    name="alipay",
    money=Money(8900, "CNY"),
    create_calls_gateway=False,
    open=_alipay_open,
    at_gateway=lambda e: ({pid: t.status for pid, t in e.trades.items()}, e.calls["query"], e.calls["close"]),
    outage_code=None,
    outage_match="HTTP 503",
    adapter_at=_alipay_at,
    timeout_s=0.3,
    timeout_match=None,
    unreachable_match="unreachable",
    forgeries=("tampered", "missing", "wrong_key", "garbled", "rsa1"),
    forge=_alipay_forge,
    ack_ok=(200, b"success", "text/plain"),
    ack_fail=((503, "temporarily unable to store the event"),
              (503, b"fail: temporarily unable to store the event", "text/plain")),
    tables=(
        StateTable("trade statuses", alipay_tx.STATUS,
                   frozenset({"WAIT_BUYER_PAY", "TRADE_SUCCESS", "TRADE_FINISHED", "TRADE_CLOSED"}), True,
                   {"WAIT_BUYER_PAY": Status.WAITING, "TRADE_SUCCESS": Status.SUCCEEDED,
                    "TRADE_FINISHED": Status.SUCCEEDED, "TRADE_CLOSED": Status.CLOSED},
                   alipay_tx.status_of, "trade_success"),
    ),
    secrets=lambda e: (alipay_config(e).private_key.reveal().splitlines()[1],),
    shown=lambda a: repr(a) + str(vars(a)),
    wrong_credentials=_alipay_wrong_credentials,
)


# -- WeChat Pay Native -----------------------------------------------------------------------------

async def _wechat_open(adapter: Adapter, emulator: Any, request: CreateRequest) -> PaymentRef:
    created = await adapter.create(request)
    assert created.payment_url is not None
    return PaymentRef(request.payment_id, None, request.amount)


def _wechat_forge(emulator: Any, ref: PaymentRef, kind: str) -> Forged:
    now, pid = int(time.time()), ref.payment_id
    changes: dict[str, Any] = {"wrong_key": {"sign_key": stranger_key()}, "stale": {"timestamp": now - 305},
                               "future": {"timestamp": now + 305}, "wrong_serial": {"serial": "PUB_KEY_ID_0123"},
                               "undecryptable": {"apiv3_key": "k" * 32}}.get(kind, {})
    body, headers = emulator.signed_callback(pid, **changes)
    if kind == "tampered":
        body = body.replace(b'"summary":"', b'"summary":"!')
    elif kind == "missing":
        del headers["Wechatpay-Signature"]
    return headers, body, None


def _wechat_wrong_credentials(emulator: Any) -> tuple[Adapter, str, str]:
    config = replace(wechat_config(emulator), cert_serial_no="0123456789ABCDEF")
    return (WechatAdapter(config, "http://127.0.0.1:9", AiohttpTransport()), "SIGN_ERROR",
            emulator.keys.merchant_private_key.splitlines()[1])


WECHAT = Gateway(
    gateway_type="wechat-pay-native",
    name="wechat",
    money=Money(2500, "CNY"),
    create_calls_gateway=True,
    open=_wechat_open,
    at_gateway=lambda e: list(e.orders),
    outage_code="SYSTEM_ERROR",
    outage_match=None,
    adapter_at=lambda e, url: WechatAdapter(replace(wechat_config(e), api_base=url), "http://127.0.0.1:9",
                                            AiohttpTransport(), timeout=0.2),
    timeout_s=0.2,
    timeout_match="timed out",
    unreachable_match=None,
    forgeries=("wrong_key", "stale", "future", "wrong_serial", "undecryptable", "tampered", "missing"),
    forge=_wechat_forge,
    ack_ok=(204, b"", None),
    ack_fail=((503, "暂时无法处理"), (503, {"code": "FAIL", "message": "暂时无法处理"}, "application/json")),
    tables=(
        StateTable("trade states", wechat_tx.TRADE_STATES,
                   frozenset({"SUCCESS", "REFUND", "NOTPAY", "CLOSED", "REVOKED", "USERPAYING", "PAYERROR"}), True,
                   {"NOTPAY": Status.WAITING, "USERPAYING": Status.PROCESSING, "SUCCESS": Status.SUCCEEDED,
                    "REFUND": Status.SUCCEEDED, "PAYERROR": Status.FAILED, "CLOSED": Status.CLOSED,
                    "REVOKED": Status.CLOSED},
                   wechat_tx.trade_status, "ACCEPT"),
    ),
    secrets=lambda e: (e.keys.apiv3_key, e.keys.merchant_private_key.splitlines()[1]),
    shown=lambda a: repr(a) + repr(a.config),  # type: ignore[attr-defined]
    wrong_credentials=_wechat_wrong_credentials,
)


_FACTS = {g.gateway_type: g for g in (STRIPE, ALIPAY, WECHAT)}
assert set(_FACTS) == set(registry.GATEWAY_TYPES), "each gateway of adapters.registry needs its facts here"
GATEWAYS: Mapping[str, Gateway] = types.MappingProxyType({name: _FACTS[name] for name in registry.GATEWAY_TYPES})


# -- refunds (tests/test_refunds.py): how each emulator is made to refund later, slowly or not at all


@dataclass(frozen=True)
class RefundKnobs:
    """One gateway's refund facts for the refund contract, amounts as payrelay writes them for
    the test payment of ``helpers.order`` (25.00 USD at Stripe, 89.00 CNY elsewhere)."""

    name: str  # fixture prefix
    zero: str
    smallest: str
    parts: tuple[str, str, str, str]  # two refunds, one over what then remains, and what remains
    piece: tuple[str, int]  # an amount, and how many of it the payment holds exactly
    timeout_s: float  # how long the adapter waits for an answer
    refunded: Callable[[Any, dict[str, Any]], str]  # what the gateway holds as refunded of the payment
    refunds_made: Callable[[Any], int]  # refunds the gateway made (this test's emulator is fresh)
    later: Callable[[Any], None]  # the next refunds stay processing at the gateway
    settle: Callable[[Any, str, bool], Awaitable[None]]  # end one (by refund number) and send its webhook
    answer_after: Callable[[Any, float], None]  # refund at once, answer this many seconds late
    down: Callable[[Any, bool], None]  # refund calls fail without refunding
    names_refunds: bool = True  # the gateway gives each refund an id of its own (Alipay: none)
    notifies_failure: bool = True  # a refund that fails later is told by webhook (Alipay: only a query
    # that finds nothing, and the same refund sent again refused, say so)


def _stripe_refunded(emulator: Any, payment: dict[str, Any]) -> str:
    intent = emulator.sessions[payment["gatewayReference"]]["payment_intent"]
    return money.to_major(emulator.refunded(intent), payment["currency"])  # USD: Stripe units are ISO


STRIPE_REFUNDS = RefundKnobs(
    name="stripe", zero="0.00", smallest="1.00", parts=("10.00", "10.00", "10.00", "5.00"), piece=("2.50", 10),
    timeout_s=stripe_adapter.TIMEOUT,
    refunded=_stripe_refunded,
    refunds_made=lambda e: len(e.refunds),
    later=lambda e: setattr(e, "refund_outcome", "succeed_later"),
    settle=lambda e, number, ok: e.settle_refund(number, "succeeded" if ok else "failed"),
    answer_after=lambda e, seconds: setattr(e, "refund_answer_delay", seconds),
    down=lambda e, down: setattr(e, "refunds_down", down),
)
CNY_AMOUNTS: dict[str, Any] = {"zero": "0.00", "smallest": "1.00", "parts": ("30.00", "30.00", "30.00", "29.00"),
                               "piece": ("8.90", 10)}  # of 89.00 CNY


def _alipay_refunded(emulator: Any, payment: dict[str, Any]) -> str:
    return money.to_major(emulator.trades[payment["paymentId"]].refunded_fen, "CNY")


ALIPAY_REFUNDS = RefundKnobs(
    name="alipay", **CNY_AMOUNTS, timeout_s=10.0,
    refunded=_alipay_refunded,
    refunds_made=lambda e: sum(len(trade.refunds) for trade in e.trades.values()),
    later=lambda e: setattr(e, "refund_outcome", "succeed_later"),
    settle=lambda e, number, ok: e.settle_refund(number, "succeeded" if ok else "failed"),
    answer_after=lambda e, seconds: setattr(e, "refund_delay", seconds),
    down=lambda e, down: setattr(e, "refund_down", down),
    names_refunds=False,
    notifies_failure=False,
)


def _wechat_refunded(emulator: Any, payment: dict[str, Any]) -> str:
    refunded = sum(r.amount for r in emulator.refunds.values()
                   if r.out_trade_no == payment["paymentId"] and r.status == "SUCCESS")
    return money.to_major(refunded, "CNY")


async def _wechat_settle(emulator: Any, number: str, ok: bool) -> None:
    await emulator.settle_refund(number, "succeed" if ok else "abnormal")


WECHAT_REFUNDS = RefundKnobs(
    name="wechat", **CNY_AMOUNTS, timeout_s=10.0,
    refunded=_wechat_refunded,
    refunds_made=lambda e: len(e.refunds),
    later=lambda e: setattr(e, "refund_outcome", "succeed_later"),
    settle=_wechat_settle,
    answer_after=lambda e, seconds: setattr(e, "refund_delay", seconds),
    down=lambda e, down: setattr(e, "down", down),
)
REFUNDS: Mapping[str, RefundKnobs] = types.MappingProxyType(
    {"stripe-connect": STRIPE_REFUNDS, "alipay-page": ALIPAY_REFUNDS, "wechat-pay-native": WECHAT_REFUNDS})
assert set(REFUNDS) == set(registry.GATEWAY_TYPES), "each gateway of adapters.registry needs its refund knobs"
