"""Handing whole texts to a streaming sink in small pieces (the offline brains, which know
their answer at once but stream it like a model would)."""

from __future__ import annotations

import asyncio
from typing import Final

from app.agents.brains import LineSink, TextSink

PIECE_CHARS: Final = 8


async def stream_text(text: str, sink: TextSink | None, *, size: int = PIECE_CHARS) -> None:
    if sink is None:
        return
    for start in range(0, len(text), size):
        sink(text[start : start + size])
        await asyncio.sleep(0)  # the route sends what came so far before the next piece


async def stream_line(speaker: str, text: str, sink: LineSink | None) -> None:
    if sink is not None:
        await stream_text(text, lambda piece: sink(speaker, piece))
