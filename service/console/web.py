"""How the console answers a browser: its templates (Jinja2, autoescaped), the security headers on
every answer, and its static files.

The pages carry no inline script or style (the Content-Security-Policy allows neither): CSS and
the one script are files under /console/static, served by payrelay itself (no CDN: the console
works offline). Pages are never cached (they show payments); static files are revalidated.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HERE = Path(__file__).parent
PREFIX = "/console"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def when(iso_or_ms: str | int | None) -> str:
    """A time as operators read it: UTC, to the second."""
    if iso_or_ms is None or iso_or_ms == "":
        return ""
    if isinstance(iso_or_ms, int):
        moment = dt.datetime.fromtimestamp(iso_or_ms / 1000, dt.UTC)
    else:
        moment = dt.datetime.fromisoformat(iso_or_ms.replace("Z", "+00:00"))
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def without_query(url: str | None) -> str:
    """A URL without what may carry a credential (user info, query, fragment)."""
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def with_query(path: str, params: Mapping[str, str]) -> str:
    """``path`` with the non-empty ``params`` as its query."""
    kept = {name: value for name, value in params.items() if value}
    return f"{path}?{urlencode(kept)}" if kept else path


TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters["when"] = when
TEMPLATES.filters["without_query"] = without_query
TEMPLATES.globals["prefix"] = PREFIX
TEMPLATES.globals["nav"] = ""  # the page of the nav bar to mark as current
TEMPLATES.globals["with_query"] = with_query


def render(template: str, status_code: int = 200, headers: Mapping[str, str] | None = None,
           **context: Any) -> Response:
    body = TEMPLATES.get_template(template).render(**context)
    return secured(HTMLResponse(body, status_code=status_code, headers=dict(headers or {})))


def secured(answer: Response) -> Response:
    """An answer of the console's own (a page, a redirect, JSON): with the headers, never cached."""
    answer.headers.update(SECURITY_HEADERS)
    answer.headers["Cache-Control"] = "no-store"
    return answer


class _Secured:
    """An ASGI app whose every answer carries the security headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      *((k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items())]
            await send(message)

        await self.app(scope, receive, send_secured)


def static_files() -> ASGIApp:
    return _Secured(StaticFiles(directory=HERE / "static"))
