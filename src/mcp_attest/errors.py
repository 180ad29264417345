"""The root of every exception mcp-attest raises.

One ``except mcp_attest.Error`` catches anything the library raises on
purpose; anything else escaping is a bug. Naming rule: every public
exception ends in ``Error``. Errors about configuration or caller input
(keyrings, store URLs, policies, resolvers, audit settings) are also
``ValueError`` through ``ConfigurationError``, so code written against the
standard library's conventions keeps working.
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "Error"]


class Error(Exception):
    """Base of every exception mcp-attest raises."""


class ConfigurationError(Error, ValueError):
    """A setting, key file, URL or argument the caller gave cannot be used."""
