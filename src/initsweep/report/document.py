"""The report as a document: a list of blocks, and the two writers that render it.

A block is a tuple: ``("h1" | "h2" | "h3", text)``, ``("p", text)``, ``("list", items)``,
``("table", frame of strings)`` or ``("img", path, alt)``. Markdown and HTML render the same
blocks, so report.md and report.html never disagree. The HTML embeds its images (base64), so it
reads on its own, e.g. in the MLflow UI's artifact view, where relative image links would not
resolve.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

Block = tuple[Any, ...]


def md_table(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table from a frame of strings (pipes escaped)."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(c) for c in frame.columns) + " |",
        "|" + "|".join("---" for _ in frame.columns) + "|",
    ]
    lines += [
        "| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)
    ]
    return "\n".join(lines)


def to_markdown(doc: Sequence[Block]) -> str:
    parts = []
    for block in doc:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            parts.append("#" * int(kind[1]) + " " + block[1])
        elif kind == "p":
            parts.append(block[1])
        elif kind == "list":
            parts.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            parts.append(md_table(block[1]))
        elif kind == "img":
            parts.append(f"![{block[2]}]({block[1]})")
    return "\n\n".join(parts) + "\n"


def inline_html(text: str) -> str:
    """Escape, then the two inline Markdown forms the report uses: `code` and **bold**."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", escaped)


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;margin:1em 0;font-size:13px}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}"
    "td:first-child,th:first-child{text-align:left}code{background:#f3f3f3;padding:0 3px}"
    "img{max-width:100%;margin:0.5em 0}"
)


def to_html(doc: Sequence[Block], root: Path) -> str:
    """A standalone HTML page; images from ``root`` embedded as base64."""
    title = next((b[1] for b in doc if b[0] == "h1"), "initsweep report")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{STYLE}</style></head><body>"
    ]
    for block in doc:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{inline_html(block[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{inline_html(block[1])}</p>")
        elif kind == "list":
            items = "".join(f"<li>{inline_html(i)}</li>" for i in block[1])
            parts.append(f"<ul>{items}</ul>")
        elif kind == "table":
            parts.append(block[1].to_html(index=False, escape=True, border=0))
        elif kind == "img":
            data = base64.b64encode((root / block[1]).read_bytes()).decode()
            parts.append(f"<img alt='{html.escape(block[2])}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
