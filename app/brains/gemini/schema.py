"""Gemini response schemas generated from the domain's models (never written by hand).

Pydantic's JSON schema is reshaped into the plain subset the structured-output path takes
reliably: references inlined (no `$ref`/`$defs`), no titles, defaults or `required` inside
(the model reports only what it found), and `X | None` as just `X`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

JSONDict = dict[str, Any]
_DROPPED = frozenset({"title", "default", "required", "description"})


def response_schema(model: type[BaseModel]) -> JSONDict:
    """The plain JSON schema of `model`, every field optional."""
    full = model.model_json_schema()
    schema: JSONDict = _plain(full, full.get("$defs", {}))
    return schema


def _plain(node: Any, defs: JSONDict) -> Any:
    if isinstance(node, list):
        return [_plain(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _plain(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
    out = {k: _plain(v, defs) for k, v in node.items() if k not in _DROPPED and k != "$defs"}
    if "properties" in node:  # field names, not keywords: none is dropped
        out["properties"] = {k: _plain(v, defs) for k, v in node["properties"].items()}
    if "anyOf" in out:
        options = [o for o in out.pop("anyOf") if o != {"type": "null"}]
        if len(options) == 1:
            out.update(options[0])
        else:
            out["anyOf"] = options
    return out
