"""Brain adapters: the concrete minds behind the agents' brain port (`app/agents/brains.py`).

`offline/` — deterministic Japanese rules and Pillow drawings, no network; `gemini/` — the
google-genai SDK. Only the composition root (`app/container.py`) imports them.
"""
