"""The WeChat Pay emulator's refunds: the ledger behind ``POST /v3/refund/domestic/refunds`` and
``GET /v3/refund/domestic/refunds/{out_refund_no}``, kept apart from the HTTP and the signing
(``sandbox.wechat``), which hold the lock and send the notifications.

Faithful where payrelay can tell (申请退款 pay.weixin.qq.com/doc/v3/merchant/4012552567, the error
tables and models of WeChat's own wechatpay-go ``services/refunddomestic``):
- one out_refund_no refunds once ("同一退款单号多次请求只退一笔"): the same request again answers the
  same refund; the same number with another order or amount is INVALID_REQUEST;
- only a paid order can be refunded: an unknown, unpaid or closed order is 404 RESOURCE_NOT_EXISTS
  ("请检查你的订单号是否正确且是否已支付，未支付的订单不能发起退款");
- more than the order has left is INVALID_REQUEST (the table's "不符合业务规则"; NOT_ENOUGH is the
  merchant's balance, forced with ``refund_error``), as are a 51st refund ("每个支付订单的部分退款
  次数不能超过50次") and an order paid more than a year ago ("交易时间超过一年的订单无法提交退款");
- a refunded order's trade_state is REFUND (转入退款); status is PROCESSING until settled, then
  SUCCESS, ABNORMAL (money left the merchant, the customer's account refused it: still counts
  against what remains) or CLOSED (nothing refunded: released again).
Deliberate leniency: "同一笔订单多次退款的请求需相隔1分钟" is not enforced.
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from sandbox.wechat import Order

RefundOutcome = Literal["succeed", "succeed_later", "abnormal_later", "closed_later"]
Settlement = Literal["succeed", "abnormal", "closed"]
OUTCOMES: tuple[RefundOutcome, ...] = ("succeed", "succeed_later", "abnormal_later", "closed_later")
SETTLED_STATUS: dict[Settlement, str] = {"succeed": "SUCCESS", "abnormal": "ABNORMAL", "closed": "CLOSED"}
EVENT_TYPES = {"SUCCESS": "REFUND.SUCCESS", "ABNORMAL": "REFUND.ABNORMAL", "CLOSED": "REFUND.CLOSED"}
SUMMARIES = {"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}
STATUS_DESC = {"PROCESSING": "退款处理中", **SUMMARIES}
MAX_REFUNDS = 50
WINDOW_SECONDS = 365 * 86400  # 支付成功时间 + 365 days
PAID = frozenset({"SUCCESS", "REFUND"})
# Refusals a test can force (``refund_error``): status and message as WeChat answers them. The codes
# are the refund API's own; the statuses follow WeChat's HTTP status table (403 权限/业务, 429, 500).
FORCED_ERRORS = {
    "NOT_ENOUGH": (403, "基本账户余额不足，请充值后重新发起"),
    "USER_ACCOUNT_ABNORMAL": (403, "退款请求失败，用户帐号注销"),
    "NO_AUTH": (403, "没有此单的退款权限"),
    "FREQUENCY_LIMITED": (429, "频率限制，1个月之前的订单请降低申请频率再重试"),
    "SYSTEM_ERROR": (500, "系统超时，请不要更换商户退款单号，请使用相同参数再次调用API"),
}

_OUT_REFUND_NO = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")


class RefundRefused(Exception):
    """WeChat's error answer to a refund call: nothing was refunded."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Refund:
    out_refund_no: str
    out_trade_no: str
    transaction_id: str
    refund_id: str
    amount: int
    total: int
    currency: str
    notify_url: str | None
    create_time: str
    reason: str | None = None
    status: str = "PROCESSING"
    success_time: str | None = None
    plan: Settlement | None = None  # how a PROCESSING refund ends when settled without saying
    history: list[str] = field(default_factory=list)

    @property
    def counts(self) -> bool:
        """Whether it takes from what the order has left (a CLOSED one gave it back)."""
        return self.status != "CLOSED"

    def answer(self) -> dict[str, Any]:
        """The refund object, as the refund call and the query answer it."""
        data: dict[str, Any] = {
            "refund_id": self.refund_id,
            "out_refund_no": self.out_refund_no,
            "transaction_id": self.transaction_id,
            "out_trade_no": self.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": self.create_time,
            "status": self.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": self.total,
                "refund": self.amount,
                "from": [],
                "payer_total": self.total,
                "payer_refund": self.amount,
                "settlement_refund": self.amount,
                "settlement_total": self.total,
                "discount_refund": 0,
                "currency": self.currency,
            },
            "promotion_detail": [],
        }
        if self.success_time:
            data["success_time"] = self.success_time
        return data

    def notice(self, mchid: str) -> dict[str, Any]:
        """The resource of its notification, decrypted: no appid, no currency, refund_status."""
        data: dict[str, Any] = {
            "mchid": mchid,
            "out_trade_no": self.out_trade_no,
            "transaction_id": self.transaction_id,
            "out_refund_no": self.out_refund_no,
            "refund_id": self.refund_id,
            "refund_status": self.status,
            "user_received_account": "支付用户零钱",
            "amount": {"total": self.total, "refund": self.amount, "payer_total": self.total,
                       "payer_refund": self.amount},
        }
        if self.success_time:
            data["success_time"] = self.success_time
        return data


def _param_error(path: str, label: str, problem: str) -> RefundRefused:
    return RefundRefused(400, "PARAM_ERROR", f"输入源“/body/{path}”映射到值字段“{label}”{problem}")


def validate(body: dict[str, Any]) -> None:
    """The request's own shape, before any order is looked at."""
    no = body.get("out_refund_no")
    if not isinstance(no, str) or not _OUT_REFUND_NO.fullmatch(no):
        raise _param_error("out_refund_no", "商户退款单号", "校验失败，须为1-64位数字、大小写字母_-|*@")
    if not body.get("out_trade_no") and not body.get("transaction_id"):
        raise _param_error("out_trade_no", "商户订单号", "与微信支付订单号二选一，必填")
    amount = body.get("amount")
    if not isinstance(amount, dict):
        raise _param_error("amount", "金额信息", "必填性规则校验失败，此字段为必填项")
    for name, label in (("refund", "退款金额"), ("total", "原订单金额")):
        value = amount.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise _param_error(f"amount/{name}", label, "校验失败，须为正整数（单位：分）")
    if amount.get("currency") != "CNY":
        raise _param_error("amount/currency", "退款币种", "校验失败，仅支持CNY")
    reason = body.get("reason")
    # string[1,80]: counted in UTF-8 bytes here, the stricter reading (as description's 127)
    if reason is not None and (not isinstance(reason, str) or not 1 <= len(reason.encode()) <= 80):
        raise _param_error("reason", "退款原因", "字符串规则校验失败，长度须为1-80")
    if "notify_url" in body:
        notify = urlsplit(str(body["notify_url"]))
        if notify.scheme not in ("https", "http") or not notify.hostname or notify.query:
            raise _param_error("notify_url", "退款结果回调url", "校验失败，须为可直接访问的绝对URL，不能携带参数")


class RefundLedger:
    """Every refund by out_refund_no, and the knobs a test or the demo sets. Not locked itself:
    the emulator calls it holding its lock."""

    def __init__(self) -> None:
        self.refunds: dict[str, Refund] = {}
        self.requests: list[dict[str, Any]] = []  # every accepted refund body
        self.outcome: RefundOutcome = "succeed"
        self.error: str | None = None

    def apply(self, body: dict[str, Any], order: Order | None, now: float, stamp: str) -> tuple[Refund, bool]:
        """The refund ``body`` asks for, on ``order`` (None: WeChat has no such order) at ``now``
        (``stamp``: the same, RFC 3339): the refund and whether it is new (False: the same request
        again, nothing more refunded)."""
        validate(body)
        if self.error is not None:
            status, message = FORCED_ERRORS[self.error]
            raise RefundRefused(status, self.error, message)
        if order is None:
            raise RefundRefused(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        if order.trade_state not in PAID or order.transaction_id is None:
            raise RefundRefused(404, "RESOURCE_NOT_EXISTS", "订单未支付，未支付的订单不能发起退款")
        amount = body["amount"]
        no = body["out_refund_no"]
        known = self.refunds.get(no)
        if known is not None:
            if known.out_trade_no != order.out_trade_no:
                raise RefundRefused(400, "INVALID_REQUEST", "商户退款单号已用于另一笔订单，请更换退款单号")
            if known.amount != amount["refund"]:
                raise RefundRefused(400, "INVALID_REQUEST", "同一退款单号多次请求只退一笔，退款金额与原退款不一致")
            return known, False
        total = order.request["amount"]["total"]
        if amount["total"] != total:
            raise RefundRefused(400, "INVALID_REQUEST", "订单金额与原订单金额不一致")
        paid_at = datetime.fromisoformat(order.success_time).timestamp() if order.success_time else now
        if now - paid_at > WINDOW_SECONDS:
            raise RefundRefused(400, "INVALID_REQUEST", "交易时间超过一年的订单无法提交退款")
        mine = [r for r in self.refunds.values() if r.out_trade_no == order.out_trade_no]
        left = total - sum(r.amount for r in mine if r.counts)
        if left <= 0:
            raise RefundRefused(400, "INVALID_REQUEST", "订单已全额退款")
        if amount["refund"] > left:
            raise RefundRefused(400, "INVALID_REQUEST", f"申请退款金额超过订单可退金额（剩余可退{left}分）")
        if len(mine) >= MAX_REFUNDS:
            raise RefundRefused(400, "INVALID_REQUEST", "每个支付订单的部分退款次数不能超过50次")
        refund = Refund(
            out_refund_no=no,
            out_trade_no=order.out_trade_no,
            transaction_id=order.transaction_id,
            refund_id="5030" + "".join(secrets.choice(string.digits) for _ in range(25)),
            amount=amount["refund"],
            total=total,
            currency=amount["currency"],
            notify_url=body.get("notify_url"),
            create_time=stamp,
            reason=body.get("reason"),
            history=["PROCESSING"],
        )
        if self.outcome == "succeed":
            self._finish(refund, "SUCCESS", stamp)
        else:
            refund.plan = {"succeed_later": "succeed", "abnormal_later": "abnormal", "closed_later": "closed"}[
                self.outcome
            ]
        self.refunds[no] = refund
        self.requests.append(body)
        return refund, True

    def find(self, out_refund_no: str) -> Refund:
        refund = self.refunds.get(out_refund_no)
        if refund is None:
            raise RefundRefused(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return refund

    def settle(self, out_refund_no: str, outcome: Settlement | None, stamp: str) -> Refund:
        """End a PROCESSING refund: ``outcome``, or the one it was created to have."""
        refund = self.refunds[out_refund_no]
        if refund.status != "PROCESSING":
            raise ValueError(f"{out_refund_no} is {refund.status}, not PROCESSING")
        chosen = outcome or refund.plan or "succeed"
        if chosen not in SETTLED_STATUS:
            raise ValueError(f"unknown refund outcome {chosen!r}")
        self._finish(refund, SETTLED_STATUS[chosen], stamp)
        return refund

    @staticmethod
    def _finish(refund: Refund, status: str, stamp: str) -> None:
        refund.status = status
        refund.history.append(status)
        if status == "SUCCESS":
            refund.success_time = stamp
