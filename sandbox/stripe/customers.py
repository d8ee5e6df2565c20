"""Customers and PaymentMethods: create, list and retrieve customers, list a customer's saved
payment methods, and the objects the hosted page makes when the customer pays."""

from __future__ import annotations

from typing import Any

from sandbox.stripe.api import _Call, _new_id
from sandbox.stripe.errors import ApiError
from sandbox.stripe.forms import _integer, _known, _metadata, _string


class Customers:
    """Mixed into ``StripeEmulator``: the ``/v1/customers`` endpoints."""

    async def _create_customer(self, call: _Call) -> dict[str, Any]:
        _known(call.params, frozenset({"email", "name", "description", "metadata", "payment_method"}))
        return self._new_customer(call.account, _string(call.params, "email", limit=512),
                                  _string(call.params, "name", limit=256), _metadata(call.params.get("metadata")))

    def _new_customer(self, account: str, email: str | None, name: str | None = None,
                      metadata: dict[str, str] | None = None) -> dict[str, Any]:
        return self._store(self.customers, {
            "id": _new_id("cus_", 14), "object": "customer", "created": self.now(), "email": email,
            "name": name, "livemode": False, "metadata": metadata or {},
            "invoice_settings": {"default_payment_method": None},
        }, account)

    async def _list_customers(self, call: _Call) -> dict[str, Any]:
        _known(call.params, frozenset({"email", "limit", "starting_after", "ending_before", "created"}))
        email = _string(call.params, "email", limit=512)
        found = [c for c in self.customers.values()
                 if self._owner[c["id"]] == call.account and (email is None or c["email"] == email)]
        return self._list(found, call.params, "/v1/customers")

    async def _retrieve_customer(self, call: _Call) -> dict[str, Any]:
        return self._find(self.customers, call.path["id"], call.account, "customer")

    async def _list_methods(self, call: _Call) -> dict[str, Any]:
        _known(call.params, frozenset({"type", "limit", "starting_after", "ending_before", "allow_redisplay"}))
        customer = self._find(self.customers, call.path["id"], call.account, "customer", "customer")
        kind = _string(call.params, "type")
        found = [m for m in self.payment_methods.values()
                 if m["customer"] == customer["id"] and (kind is None or m["type"] == kind)]
        return self._list(found, call.params, f"/v1/customers/{customer['id']}/payment_methods")

    @staticmethod
    def _list(objects: list[dict[str, Any]], params: dict[str, Any], url: str) -> dict[str, Any]:
        limit = _integer(params.get("limit", "10"), "limit", minimum=1)
        if limit > 100:
            raise ApiError(400, "This value must be less than or equal to 100.", param="limit")
        newest_first = list(reversed(objects))  # insertion order is creation order
        return {"object": "list", "data": newest_first[:limit], "has_more": len(newest_first) > limit, "url": url}

    def _new_method(self, account: str, kind: str, customer: str | None, email: str | None) -> dict[str, Any]:
        details: dict[str, Any] = (
            {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2034, "country": "US"}
            if kind == "card" else {"bank_name": "STRIPE TEST BANK", "last4": "6789", "account_type": "checking"}
        )
        return self._store(self.payment_methods, {
            "id": _new_id("pm_", 24), "object": "payment_method", "type": kind, kind: details,
            "billing_details": {"email": email}, "customer": customer, "created": self.now(), "livemode": False,
        }, account)
