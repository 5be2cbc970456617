"""Function tools on the Realtime side, as pure functions: ``session.tools``
and ``tool_choice`` (of the session or of one response.create) checked when
they arrive (protocol.py turns a ToolsError into an ``error`` event), what
one response offers the LLM (``offered``), and how the conversation's
function_call / function_call_output items reach the LLM (``messages``).

Supported: tools of type "function" with a name, a description and a JSON
schema of the arguments ("parameters", an object schema), and one extension
field, ``"sensitive": true``: such a tool is called only after the user
confirmed it in the turn before (confirm.py); tool_choice
"auto", "none", "required" or {"type": "function", "name": ...}. How the
LLM prompts for tools and constrains a call's arguments is the LLM
service's business (services/llm/tools.py)."""
from __future__ import annotations

import json
import re
from typing import Any, Sequence

from services.gateway.backends.types import ChatMessage, ToolSpec, Tools
from services.gateway.session import Item

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CHOICES = ("auto", "none", "required")
MAX_DESCRIPTION_CHARS = 1024


class ToolsError(Exception):
    def __init__(self, code: str, message: str, param: str) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def check_tools(tools: list, path: str) -> list[dict[str, Any]]:
    """The tools, each {"type": "function", "name", "description", "parameters"}."""
    out, names = [], set()
    for i, t in enumerate(tools):
        p = f"{path}[{i}]"
        if not isinstance(t, dict):
            raise ToolsError("invalid_type", f"'{p}' must be an object", p)
        typ = t.get("type", "function")
        if typ != "function":
            raise ToolsError("invalid_value", f"'{p}.type' {str(typ)[:40]!r} is not supported; only 'function' "
                             "tools are", f"{p}.type")
        name = t.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ToolsError("invalid_value", f"'{p}.name' must be 1-64 letters, digits, '_' or '-', got "
                             f"{str(name)[:80]!r}", f"{p}.name")
        if name in names:
            raise ToolsError("invalid_value", f"'{p}.name' {name!r} is used by another tool", f"{p}.name")
        names.add(name)
        desc = t.get("description") or ""
        if not isinstance(desc, str) or len(desc) > MAX_DESCRIPTION_CHARS:
            raise ToolsError("invalid_value", f"'{p}.description' must be a string of at most "
                             f"{MAX_DESCRIPTION_CHARS} characters", f"{p}.description")
        params = t.get("parameters")
        if params is not None and (not isinstance(params, dict) or params.get("type", "object") != "object"):
            raise ToolsError("invalid_value", f"'{p}.parameters' must be a JSON schema of an object "
                             "(\"type\": \"object\")", f"{p}.parameters")
        sensitive = t.get("sensitive", False)
        if not isinstance(sensitive, bool):
            raise ToolsError("invalid_type", f"'{p}.sensitive' must be true or false", f"{p}.sensitive")
        tool: dict[str, Any] = {"type": "function", "name": name, "description": desc, "parameters": params or {}}
        if sensitive:
            tool["sensitive"] = True
        out.append(tool)
    return out


def sensitive(tools: Sequence[dict[str, Any]] | None) -> frozenset[str]:
    """Names of the tools marked ``"sensitive": true``."""
    return frozenset(t["name"] for t in tools or () if t.get("sensitive"))


def check_choice(choice: Any, tools: Sequence[dict[str, Any]] | None, path: str) -> str | dict[str, str]:
    """tool_choice: "auto" | "none" | "required" | {"type": "function", "name": one of ``tools``}
    (``tools`` None: not known yet, the name is checked when a response is made)."""
    if isinstance(choice, str):
        if choice not in CHOICES:
            raise ToolsError("invalid_value", f"'{path}' must be 'auto', 'none', 'required' or "
                             f"{{\"type\": \"function\", \"name\": ...}}, got {choice[:40]!r}", path)
        return choice
    if not isinstance(choice, dict):
        raise ToolsError("invalid_type", f"'{path}' must be a string or an object", path)
    if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
        raise ToolsError("invalid_value", f"'{path}' as an object must be {{\"type\": \"function\", "
                         "\"name\": \"<tool name>\"}}", path)
    name = choice["name"]
    if tools is not None and name not in {t["name"] for t in tools}:
        raise ToolsError("invalid_value", f"'{path}.name' {name[:64]!r} is not one of the tools "
                         f"({', '.join(t['name'] for t in tools) or 'none defined'})", f"{path}.name")
    return {"type": "function", "name": name}


def offered(tools: Sequence[dict[str, Any]], choice: str | dict[str, str]) -> Tools | None:
    """What a response offers the LLM; None: nothing (no tools, or "none")."""
    if not tools or choice == "none":
        return None
    specs = tuple(ToolSpec(t["name"], t.get("description") or "",
                           json.dumps(t["parameters"]) if t.get("parameters") else "") for t in tools)
    if isinstance(choice, dict):
        return Tools(specs, "function", choice["name"])
    return Tools(specs, choice)


def messages(items: Sequence[Item]) -> dict[str, ChatMessage]:
    """The LLM's view of function_call / function_call_output items, by item
    id: a call as the assistant's (name, arguments, call id), an output as
    the tool's, named after its call when the call is in the conversation."""
    names = {it.call_id: it.name for it in items if it.type == "function_call"}
    out = {}
    for it in items:
        if it.type == "function_call":
            out[it.id] = ChatMessage("assistant", it.arguments, name=it.name, tool_call_id=it.call_id)
        elif it.type == "function_call_output":
            out[it.id] = ChatMessage("tool", it.output, name=names.get(it.call_id, ""), tool_call_id=it.call_id)
    return out
