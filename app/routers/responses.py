"""Response classes shared by the routers."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class ShapedJSON(Response):
    """A body the route has already built in the shape of its documented `response_model`,
    rendered by orjson as is. FastAPI skips re-validating a returned Response, which is most
    of a read route's own cost; the polled reads (interview and family status) use it, and
    tests/api/test_journey.py checks on every store that their bodies are exactly what the
    response model would have produced (nothing missing, nothing extra)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
