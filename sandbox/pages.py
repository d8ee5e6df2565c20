"""The emulators' HTML pages. A page is its template (``sandbox/templates/<name>.html``) inside its
gateway's frame (``<look>.html``: the header and footer all of that gateway's pages share) inside
one layout (``layout.html``: the mobile viewport, the CSS of every page in ``base.css`` and the
gateway's look in ``<look>.css``). Everything is inline, so the pages work offline."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path
from string import Template
from typing import Literal

import segno

TEMPLATES = Path(__file__).parent / "templates"
Look = Literal["stripe", "alipay", "wechat"]
LANGUAGE: dict[Look, str] = {"stripe": "en", "alipay": "zh-CN", "wechat": "zh-CN"}


def _read(name: str) -> str:
    return (TEMPLATES / name).read_text(encoding="utf-8")


def fragment(template: str, **values: str) -> str:
    """The template ``template`` with ``values`` (HTML: the caller escapes them)."""
    return Template(_read(f"{template}.html")).substitute(values)


def render(look: Look, template: str, title: str, /, **values: str) -> str:
    """The whole page: ``fragment(template, **values)`` in ``look``'s frame (which takes the same
    values: Alipay's and WeChat's name the part of the gateway the page is as ``area``) and the
    layout; ``title`` is plain text."""
    return Template(_read("layout.html")).substitute(
        lang=LANGUAGE[look], title=escape(title), look=look, css=_read("base.css") + _read(f"{look}.css"),
        body=fragment(look, **values, content=fragment(template, **values)),
    )


def qr_svg(text: str, label: str) -> str:
    """``text`` as an inline SVG QR code (with its quiet zone) that scales to its box; ``label``
    is what a screen reader says."""
    svg = segno.make(text, error="m", micro=False).svg_inline(scale=6, omitsize=True, title=label, svgclass=None,
                                                               lineclass=None)
    return svg.replace("<svg ", '<svg role="img" ', 1)


def ident(value: str) -> str:
    """An id or code, in small monospace that breaks anywhere rather than widen the page."""
    return f'<span class="id">{escape(value)}</span>'


def records(headings: Sequence[str], rows: Iterable[tuple[str, Sequence[str]]], empty: str) -> str:
    """A table of records that a phone shows as one card per row, each cell under its heading
    (base.css). A row is (the attributes of its ``<tr>``, its cells as HTML); ``empty`` is the text
    of a table without rows."""
    head = "".join(f"<th>{escape(heading)}</th>" for heading in headings)
    body = "".join(
        f"<tr{attributes}>"
        + "".join(f'<td data-label="{escape(heading)}"><div class="cell">{cell}</div></td>'
                  for heading, cell in zip(headings, cells, strict=True))
        + "</tr>"
        for attributes, cells in rows
    ) or f'<tr><td colspan="{len(headings)}">{escape(empty)}</td></tr>'
    return f'<table class="records"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def yuan(fen: int) -> str:
    """A CNY amount as the Chinese cashiers show it: ¥1,234.50."""
    return f"¥{fen // 100:,}.{fen % 100:02d}"
