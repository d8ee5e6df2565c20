"""Acting as the customer over HTTP (the tests, the contract suite): ``pay`` and ``settle`` open
the hosted page, find the form for the action in its HTML, and post it, like a browser would."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Literal
from urllib.parse import urljoin

import httpx

from sandbox.base import Outcome
from sandbox.stripe.checkout import PAGE_PREFIX
from sandbox.stripe.errors import CheckoutError

# customer actions on the hosted page, by the form's action field
PAGE_ACTIONS = {"paid": "pay", "processing": "delayed", "failed": "decline", "cancel": "cancel"}


class Payer:
    """Mixed into ``StripeEmulator``: ``Emulator.pay`` and ``Emulator.settle``."""

    async def pay(self, payment_url: str, outcome: Outcome = "paid") -> str:
        action = PAGE_ACTIONS[outcome]
        async with httpx.AsyncClient(timeout=10, follow_redirects=False) as http:
            page = await http.get(payment_url)
            if page.status_code != 200:
                raise CheckoutError(f"checkout page answered {page.status_code}")
            form = _form(page.text, action)
            if form is None:
                raise CheckoutError(f"the checkout page offers no {action!r}: {_notice(page.text)}")
            answer = await http.post(urljoin(payment_url, form[0]), data=form[1])
        if answer.status_code == 303:
            return answer.headers["location"]
        if answer.status_code == 200:  # declined: the customer is still on the page
            return payment_url
        raise CheckoutError(f"checkout page refused {action!r} ({answer.status_code}): {_notice(answer.text)}")

    async def settle(self, payment_id: str, outcome: Literal["paid", "failed"]) -> None:
        pending = [s for s in self.sessions.values() if s["client_reference_id"] == payment_id and self._pending(s)]
        if not pending:
            raise CheckoutError(f"no bank transfer in flight for {payment_id!r}")
        url = f"{self.base_url}{PAGE_PREFIX}{pending[-1]['id']}"
        async with httpx.AsyncClient(timeout=10) as http:
            form = _form((await http.get(url)).text, f"settle_{outcome}")
            if form is None:
                raise CheckoutError(f"the checkout page offers no way to settle {payment_id!r}")
            answer = await http.post(urljoin(url, form[0]), data=form[1])
        if answer.status_code != 200:
            raise CheckoutError(f"settling {payment_id!r} answered {answer.status_code}: {_notice(answer.text)}")


class _Forms(HTMLParser):
    """The page's forms: (action, fields) with their hidden inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []
        self.notice = ""
        self._in_notice = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append((attributes.get("action", ""), {}))
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1][1][attributes["name"]] = attributes.get("value", "")
        elif tag == "p" and "notice" in attributes.get("class", ""):
            self._in_notice = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self._in_notice = False

    def handle_data(self, data: str) -> None:
        if self._in_notice:
            self.notice += data


def _form(page: str, action: str) -> tuple[str, dict[str, str]] | None:
    parser = _Forms()
    parser.feed(page)
    return next((form for form in parser.forms if form[1].get("action") == action), None)


def _notice(page: str) -> str:
    parser = _Forms()
    parser.feed(page)
    return parser.notice.strip() or page[:200]
