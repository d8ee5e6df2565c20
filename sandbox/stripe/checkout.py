"""The hosted checkout page ``/c/pay/{id}`` (sandbox/templates/stripe_checkout.html) and what the
customer's actions on it do: pay by card, start a bank transfer and settle it, decline, cancel.
Once paid, the page also plays Stripe's side of the payment's refunds (the sandbox's stand-in for
the Dashboard): choose what the next refunds do, settle a pending refund, fail a succeeded one."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from sandbox.pages import fragment, render
from sandbox.stripe.api import _new_id
from sandbox.stripe.currencies import checkout_amount
from sandbox.stripe.refunds import REFUND_OUTCOMES

PAGE_PREFIX = "/c/pay/"
TEST_EMAIL = "customer@example.com"  # who pays when the session names no customer_email
_Button = tuple[str, str, bool, tuple[tuple[str, str], ...]]  # action, label, secondary, more hidden fields


class Checkout:
    """Mixed into ``StripeEmulator``: the page's two routes and the session changes behind them."""

    def _complete(self, session: dict[str, Any], *, paid: bool) -> None:
        """The customer paid by card (paid) or started a bank transfer (complete but unpaid)."""
        account = self._owner[session["id"]]
        usage = self._setup_usage[session["id"]]
        email = session["customer_email"] or TEST_EMAIL
        if session["customer"] is None and (usage or session["customer_creation"] == "always"):
            session["customer"] = self._new_customer(account, email)["id"]
        method = self._new_method(account, "card" if paid else "us_bank_account", None, email)
        if usage and paid:
            method["customer"] = session["customer"]
        data = self._intent_data[session["id"]]
        intent = self._new_intent(
            account, amount=session["amount_total"], currency=session["currency"], customer=session["customer"],
            payment_method=method["id"], setup_future_usage=usage, metadata=dict(data["metadata"]),
            description=data["description"], status="succeeded" if paid else "processing",
            amount_received=session["amount_total"] if paid else 0,
            latest_charge=_new_id("ch_", 24),
        )
        session.update(status="complete", payment_status="paid" if paid else "unpaid", url=None,
                       payment_intent=intent["id"], customer_details={"email": email, "name": None})
        self._event("checkout.session.completed", session)

    def _settle(self, session: dict[str, Any], paid: bool) -> None:
        intent = self.payment_intents[session["payment_intent"]]
        if paid:
            intent.update(status="succeeded", amount_received=intent["amount"])
            session["payment_status"] = "paid"
            if intent["setup_future_usage"]:
                self.payment_methods[intent["payment_method"]]["customer"] = session["customer"]
            self._event("checkout.session.async_payment_succeeded", session)
        else:
            intent.update(status="requires_payment_method", last_payment_error={
                "type": "invalid_request_error", "code": "bank_account_unusable",
                "message": "The bank transfer failed."})
            self._event("checkout.session.async_payment_failed", session)

    def _pending(self, session: dict[str, Any]) -> bool:
        """Complete, unpaid and its bank transfer still in flight."""
        intent = self.payment_intents.get(session["payment_intent"] or "")
        return session["status"] == "complete" and intent is not None and intent["status"] == "processing"

    async def _page(self, request: Request) -> Response:
        session = self.sessions.get(request.path_params["id"])
        if session is None:
            return HTMLResponse(self._render_missing(), 404)
        self._expire_if_due(session)
        await self._flush()
        return HTMLResponse(self._render(session))

    async def _page_action(self, request: Request) -> Response:
        session = self.sessions.get(request.path_params["id"])
        if session is None:
            return HTMLResponse(self._render_missing(), 404)
        self._expire_if_due(session)
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        action = form.get("action", "")
        if action in ("pay", "delayed", "decline", "cancel") and session["status"] != "open":
            await self._flush()
            return HTMLResponse(self._render(session, "This Checkout Session can no longer be paid.", True), 400)
        if action in ("settle_paid", "settle_failed") and not self._pending(session):
            return HTMLResponse(self._render(session, "There is no bank transfer in flight to settle.", True), 400)
        if action in ("pay", "delayed"):
            self._complete(session, paid=action == "pay")
            await self._flush()
            target = session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"])
            return RedirectResponse(target, 303)
        if action == "decline":
            return HTMLResponse(self._render(session, "Your card was declined. Try another card.", True))
        if action == "cancel":
            return RedirectResponse(session["cancel_url"] or request.url.path, 303)
        if action in ("settle_paid", "settle_failed"):
            self._settle(session, paid=action == "settle_paid")
            await self._flush()
            return HTMLResponse(self._render(session))
        if action == "refund_outcome" and form.get("outcome") in REFUND_OUTCOMES:
            self.refund_outcome = form["outcome"]
            return HTMLResponse(self._render(session, f"Refunds made from now on: {form['outcome']}."))
        if action in ("refund_succeeded", "refund_failed"):
            refund = self.refunds.get(form.get("refund", ""))
            try:
                if refund is None or refund["payment_intent"] != session["payment_intent"]:
                    raise ValueError("This payment has no such refund.")
                self._settle_refund(refund, action.removeprefix("refund_"), "expired_or_canceled_card")
            except ValueError as exc:
                return HTMLResponse(self._render(session, str(exc), True), 400)
            await self._flush()
            return HTMLResponse(self._render(session, f"Refund {refund['id']} {refund['status']}."))
        return HTMLResponse(self._render(session, f"Unknown action {action!r}.", True), 400)

    def _render(self, session: dict[str, Any], notice: str = "", error: bool = False) -> str:
        amount = checkout_amount(session["amount_total"], session["currency"])
        card = ""
        sections: list[tuple[str, list[_Button]]] = []  # (heading, buttons): groups of forms
        intent = self.payment_intents.get(session["payment_intent"] or "")
        if session["status"] == "open":
            card = fragment("stripe_card", email=escape(session["customer_email"] or TEST_EMAIL))
            sections = [("", [("pay", f"Pay {amount}", False, ())]),
                        ("Other test outcomes", [("delayed", "Pay with bank transfer (delayed)", True, ()),
                                                 ("decline", "Decline (card 4000 0000 0000 0002)", True, ()),
                                                 ("cancel", "Cancel", True, ())])]
        elif self._pending(session):
            notice = notice or "Bank transfer initiated: the payment completes when the funds arrive."
            sections = [("Test: settle the transfer", [("settle_paid", "Funds arrive (settle as paid)", False, ()),
                                                       ("settle_failed", "Transfer fails (settle as failed)", True,
                                                        ())])]
        elif session["status"] == "expired":
            notice, error = notice or "This Checkout Session has expired and can no longer be paid.", True
        elif session["payment_status"] == "paid":
            notice = notice or "Payment complete. Thank you!"
            sections = self._refund_sections(session)  # the Dashboard's part, on the page
        elif intent is not None and intent["status"] == "requires_payment_method":
            notice, error = notice or "The bank transfer failed.", True
        notice_html = (f'<p class="notice{" error" if error else ""}" role="status">{escape(notice)}</p>'
                       if notice else "")
        description = self._descriptions.get(session["id"], "")
        return render("stripe", "stripe_checkout", f"{description} · {amount} · Stripe Checkout (payrelay sandbox)",
                      amount=escape(amount), description=escape(description),
                      session_id=escape(session["id"]), notice=notice_html, card=card,
                      actions="\n".join(self._actions(f"{PAGE_PREFIX}{session['id']}", heading, buttons)
                                        for heading, buttons in sections))

    @staticmethod
    def _actions(action: str, heading: str, buttons: list[_Button]) -> str:
        """One group of the page's buttons, each its own form posting its action."""
        forms = "".join(
            f'<form method="post" action="{escape(action)}"><input type="hidden" name="action" value="{name}">'
            + "".join(f'<input type="hidden" name="{key}" value="{escape(value)}">' for key, value in extra)
            + f'<button type="submit"{" class=secondary" if secondary else ""}>{escape(label)}</button></form>'
            for name, label, secondary, extra in buttons
        )
        if not forms:
            return ""
        title = f"<h2>{escape(heading)}</h2>" if heading else ""
        return f'<div class="actions">{title}{forms}</div>'

    def _refund_sections(self, session: dict[str, Any]) -> list[tuple[str, list[_Button]]]:
        """A paid session's refund controls: the outcome of the next refunds, and each refund's fate."""
        outcomes: list[_Button] = [
            ("refund_outcome", f"Next refunds: {outcome}{' (chosen)' if outcome == self.refund_outcome else ''}",
             True, (("outcome", outcome),))
            for outcome in REFUND_OUTCOMES
        ]
        fates: list[_Button] = []
        for refund in self.refunds.values():
            if refund["payment_intent"] != session["payment_intent"]:
                continue
            amount = checkout_amount(refund["amount"], refund["currency"])
            if refund["status"] == "pending":
                fates.append(("refund_succeeded", f"Refund {amount} {refund['id']}: succeeds", False,
                              (("refund", refund["id"]),)))
            if refund["status"] in ("pending", "succeeded"):
                fates.append(("refund_failed", f"Refund {amount} {refund['id']}: fails", True,
                              (("refund", refund["id"]),)))
        return [("Test: what the next refunds do", outcomes), ("Test: this payment's refunds", fates)]

    @staticmethod
    def _render_missing() -> str:
        return render("stripe", "stripe_missing", "Not found · Stripe Checkout (payrelay sandbox)")
