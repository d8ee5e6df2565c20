"""Schemathesis against a live payrelay (real port, real Redis, the Stripe and WeChat emulators):
generated requests — valid by the OpenAPI document and deliberately invalid — for every operation.
No answer may be a 5xx, every answer must match its documented status, content type, headers and
schema, and whatever the document calls invalid must be refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import time
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from adapters import money
from adapters.stripe.adapter import StripeAdapter
from tests.conftest import API_KEY, Relay, StartRelay

# Per operation, per mode (valid / invalid), per target (random or real payment ids): ~1000 requests
# in all by default; PAYRELAY_FUZZ_EXAMPLES=200 for a deeper, non-repeating run.
EXAMPLES = int(os.environ.get("PAYRELAY_FUZZ_EXAMPLES", "20"))
DERANDOMIZE = "PAYRELAY_FUZZ_EXAMPLES" not in os.environ  # CI: the same cases every run
VALID_CREATES = 2 * EXAMPLES
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
CLOUDREVE_KEY = "cloudreve-fuzz-key-" + "c" * 24


async def _payments(relay: Relay) -> list[str]:
    """One Stripe and one WeChat payment, so that generated calls also reach real payments."""
    base = {"date": "2026-11-21", "completePayRedirectUrl": "https://shop.example/done",
            "cancelPayRedirectUrl": "https://shop.example/cancel", "onlineScenario": True}
    bodies = [base | {"transactionId": f"fz-{uuid.uuid4().hex[:8]}", "amount": "5.00", "currency": "USD",
                      "paymentGatewayType": "stripe-connect", "customerIdentifier": "a@example.com"},
              base | {"transactionId": f"fz-{uuid.uuid4().hex[:8]}", "amount": "5.00", "currency": "CNY",
                      "paymentGatewayType": "wechat-pay-native"}]
    async with relay.client() as client:
        answers = await asyncio.gather(*(client.post("/api/transactions", json=b) for b in bodies))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return [a.json()["paymentId"] for a in answers]


# Requests that are valid by every rule, cross-field ones included: each must open a payment.
_TEXT = st.characters(min_codepoint=32, exclude_categories=("Cs",))
_REDIRECT = st.from_regex(r"https://shop\.example(:[1-9][0-9]{2,3})?/[A-Za-z0-9/_.~-]{0,40}(\?[a-z]=[0-9]{1,3})?",
                          fullmatch=True)
_COMMON = {
    "transactionId": st.from_regex(r"[!-~]{1,64}", fullmatch=True),
    "date": st.one_of(st.dates().map(str), st.datetimes().map(lambda d: d.isoformat(timespec="seconds")),
                      st.datetimes(timezones=st.just(dt.UTC)).map(dt.datetime.isoformat)),
    "completePayRedirectUrl": _REDIRECT,
    "cancelPayRedirectUrl": _REDIRECT,
    "onlineScenario": st.just(True),
    "description": st.text(_TEXT, max_size=300),
}


def _amount(currency: str, step: int = 1) -> st.SearchStrategy[str]:
    """Amounts the gateway takes: whole multiples of its ``step`` in minor units."""
    return st.integers(1, 10**9 // step).map(lambda n: money.to_major(n * step, currency))


STRIPE_CURRENCIES = ["USD", "EUR", "JPY", "KRW", "BHD", "ISK", "GBP", "CNY"]
VALID_BODIES = st.one_of(
    st.sampled_from(STRIPE_CURRENCIES).flatmap(lambda currency: st.fixed_dictionaries(
        {**_COMMON, "paymentGatewayType": st.just("stripe-connect"), "currency": st.just(currency),
         "amount": _amount(currency, StripeAdapter.amount_steps.get(currency, 1)),
         "customerIdentifier": st.emails()},
        optional={"supportOfflineScenario": st.booleans(), "notifyUrl": _REDIRECT})),
    st.fixed_dictionaries(
        {**_COMMON, "paymentGatewayType": st.just("wechat-pay-native"), "currency": st.just("CNY"),
         "amount": _amount("CNY")},
        optional={"customerIdentifier": st.one_of(st.emails(), st.uuids().map(str),
                                                  st.from_regex(r"\+86 1[3-9][0-9]{9}", fullmatch=True))}),
)


def rejected(path: str) -> Any:
    """Invalid requests are refused: by a 4xx, or on the Cloudreve bridge, which answers every call
    with HTTP 200 by protocol, by a non-zero code."""
    if not path.startswith("/cloudreve/"):
        return negative_data_rejection

    def cloudreve_rejection(ctx: Any, response: Any, case: schemathesis.Case) -> bool:
        code = response.json()["code"]
        assert code != 0, f"Cloudreve bridge accepted an invalid request: {case.as_curl_command()}"
        return True

    return cloudreve_rejection


def fuzz(strategy: Any, test: Any) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=DERANDOMIZE,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        test(case)

    run()


@pytest.mark.slow
# schemathesis's own strategies use the random module, which Hypothesis deprecates
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_generated_requests(start_relay: StartRelay, stripe_emulator: Any, wechat_emulator: Any) -> None:
    relay = start_relay(stripe_emulator, wechat_emulator, PAYRELAY_CLOUDREVE_KEY=CLOUDREVE_KEY)
    doc = httpx.get(f"{relay.url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(doc)
    payment_ids = asyncio.run(_payments(relay))

    @schema.auth()
    class ApiKey:
        """The API key, on every generated request except those that leave it out on purpose."""

        def get(self, case: schemathesis.Case, context: Any) -> str:
            return API_KEY

        def set(self, case: schemathesis.Case, data: str, context: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    calls: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    no_negative: set[str] = set()
    started = time.monotonic()

    def call(case: schemathesis.Case, checks: list[Any]) -> None:
        response = case.call(base_url=relay.url, timeout=30)
        calls[case.operation.label] += 1
        statuses[response.status_code] += 1
        excluded = [negative_data_rejection] if case.operation.path.startswith("/cloudreve/") else []
        case.validate_response(response, checks=checks, excluded_checks=excluded)

    for result in schema.get_all_operations():
        operation = result.ok()
        takes_payment = "{paymentId}" in operation.path
        targets: list[dict[str, Any] | None] = [None, *({"paymentId": pid} for pid in payment_ids)] \
            if takes_payment else [None]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])
            for path_parameters in targets:
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters,
                                                 auth_storage=schema.auth)
                try:
                    fuzz(strategy, lambda case, checks=checks: call(case, checks))
                except Unsatisfiable:  # nothing in this operation can be made invalid
                    assert mode is GenerationMode.NEGATIVE, operation.label
                    no_negative.add(operation.label)

    create = schema.find_operation_by_label("POST /api/transactions")
    opened: Counter[str] = Counter()

    @settings(max_examples=VALID_CREATES, deadline=None, database=None, derandomize=DERANDOMIZE,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(body=VALID_BODIES)
    def valid_create(body: dict[str, Any]) -> None:
        body = body | {"transactionId": f"{uuid.uuid4().hex[:8]}{body['transactionId']}"[:64]}  # a new one
        case = create.Case(body=body, headers={"Authorization": f"Bearer {API_KEY}"}, media_type="application/json")
        response = case.call(base_url=relay.url, timeout=30)
        calls[create.label] += 1
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)
        assert response.status_code == 200, f"a valid request was refused: {response.text}\n{case.as_curl_command()}"
        opened[body["paymentGatewayType"]] += 1

    valid_create()
    assert set(opened) == {"stripe-connect", "wechat-pay-native"}, opened

    total = sum(calls.values())
    print(f"schemathesis: {total} requests over {len(calls)} operations in {time.monotonic() - started:.1f}s; "
          f"statuses {dict(sorted(statuses.items()))}; no invalid variant: {sorted(no_negative)}")
    assert total >= 300, calls
    assert not any(status >= 500 for status in statuses if status != 503), statuses
    assert len(calls) == len(list(schema.get_all_operations()))
