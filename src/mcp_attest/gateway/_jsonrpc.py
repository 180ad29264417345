"""The few JSON-RPC shapes the gateway inspects or builds itself.

The gateway is a message-level proxy: it reads a message only as far as it
must (method, id, the params of a ``tools/call``) and forwards everything
else byte-for-byte in meaning, so MCP features it does not know about keep
working through it.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "LIMIT_REACHED",
    "PARSE_ERROR",
    "UPSTREAM_TIMEOUT",
    "UPSTREAM_UNAVAILABLE",
    "Message",
    "dumps",
    "error_response",
    "gateway_error_result",
    "is_notification",
    "is_request",
    "is_response",
    "reencodable",
    "valid_id",
]

Message = dict[str, Any]

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
UPSTREAM_TIMEOUT = -32001
UPSTREAM_UNAVAILABLE = -32002
LIMIT_REACHED = -32003


def is_request(message: Message) -> bool:
    return "method" in message and "id" in message


def is_notification(message: Message) -> bool:
    return "method" in message and "id" not in message


def is_response(message: Message) -> bool:
    return "method" not in message and "id" in message and ("result" in message or "error" in message)


def valid_id(value: Any) -> bool:
    """MCP request ids and progress tokens: a string or an integer (never a bool, list or object)."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def error_response(request_id: Any, code: int, message: str, data: Any = None) -> Message:
    error: Message = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def gateway_error_result(reason: str, detail: str) -> Message:
    """A refusal of the gateway's own (pinning, signing), shaped like V10.

    Its ``gatewayError`` marker keeps it distinct from an attestation
    verdict, whose ``reason`` is by contract one of the draft's eight values.
    """
    text = orjson.dumps({"gatewayError": True, "reason": reason, "detail": detail}).decode()
    return {"content": [{"type": "text", "text": text}], "isError": True}


def dumps(message: Message) -> bytes:
    return orjson.dumps(message)


def reencodable(message: Any) -> bool:
    """Whether the gateway can write ``message`` out again.

    orjson reads JSON nested up to 1024 levels but writes only up to 254 (and
    the verifier's own ``json`` recursion gives out near 1000), so a deeper
    message could be parsed and then neither verified nor forwarded: it is
    refused on arrival instead of failing half-way through.
    """
    try:
        orjson.dumps(message)
    except orjson.JSONEncodeError:
        return False
    return True


def parse_message(data: bytes | str) -> Any:
    """An upstream message, or ``None`` when it is not JSON or too deep to forward.

    The same ``reencodable`` rule the listeners apply to clients: a hostile
    upstream's 1000-level answer would otherwise fail when it is written
    back out, turning one bad answer into a server error or a dead session.
    """
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return parsed if reencodable(parsed) else None
