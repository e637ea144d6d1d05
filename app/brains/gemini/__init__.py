"""The Gemini adapters: one call machinery (`caller.py`), one file per brain."""
