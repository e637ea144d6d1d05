"""The yardstick for `status_throughput.py`: the least a FastAPI JSON endpoint can cost.

No middleware, no dependencies, no response model; served by the benchmark with exactly the
uvicorn flags of the real app:

    uvicorn bench._bare_app:app
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, Any]:
    return {"status": "ok", "service": "bare", "items": [1, 2, 3]}
