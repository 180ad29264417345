"""Gateway fixtures live in ``gateway_helpers`` (a unique module name, importable by the tests)."""

from gateway_helpers import everything_http, hs_keys, http_gateway, third_party

__all__ = ["everything_http", "hs_keys", "http_gateway", "third_party"]
