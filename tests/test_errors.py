"""One exception tree: every exception mcp-attest defines is an ``mcp_attest.Error``."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import mcp_attest
from mcp_attest import AttestationRejectedError, ConfigurationError, Error, Reason
from mcp_attest.mcp import AttestationRejectedError as ClientRejectedError


def _internal(module: str) -> bool:
    """Private modules, and the gateway and CLIs (used as programs): not library API."""
    private = any(part.startswith("_") for part in module.split("."))
    return private or module.startswith("mcp_attest.gateway.") or module.endswith(".cli")


def _exception_classes() -> list[tuple[str, type[BaseException]]]:
    found = []
    for info in pkgutil.walk_packages(mcp_attest.__path__, "mcp_attest."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                found.append((info.name, obj))
    return found


def _exported() -> set[type[BaseException]]:
    packages = ["mcp_attest", "mcp_attest.mcp", "mcp_attest.audit", "mcp_attest.gateway", "mcp_attest.stores"]
    packages += ["mcp_attest.conformance.runner"]
    names = set()
    for package in packages:
        module = importlib.import_module(package)
        names |= {getattr(module, n) for n in module.__all__ if inspect.isclass(getattr(module, n))}
    return names


def test_every_exception_is_under_the_root() -> None:
    classes = _exception_classes()
    assert len(classes) > 15
    # private control-flow exceptions (``_Reject``...) never leave their module
    outside = [
        f"{m}.{c.__name__}" for m, c in classes if not (issubclass(c, Error) or c.__name__.startswith("_"))
    ]
    assert outside == [], outside


def test_public_exceptions_follow_one_naming_rule_and_are_exported() -> None:
    exported = _exported()
    for module, cls in _exception_classes():
        if cls.__name__.startswith("_") or _internal(module):
            continue
        assert cls.__name__.endswith("Error"), f"{module}.{cls.__name__}"
        assert cls in exported, f"{module}.{cls.__name__} is raised but not exported"


def test_configuration_errors_are_also_value_errors() -> None:
    assert issubclass(ConfigurationError, ValueError)
    with pytest.raises(ConfigurationError):
        mcp_attest.VerifierPolicy(skew=-1)
    with pytest.raises(ValueError, match="args_binding"):
        mcp_attest.VerifierPolicy(args_binding="lax")  # type: ignore[arg-type]


def test_local_and_remote_rejections_are_one_exception_type() -> None:
    assert issubclass(ClientRejectedError, AttestationRejectedError)
    local = AttestationRejectedError(Reason.NONCE_REPLAY, "nonce.replayed")
    assert (local.reason, local.detail, local.verdict) == (Reason.NONCE_REPLAY, "nonce.replayed", None)
    assert str(local) == "attestation rejected: nonce_replay (nonce.replayed)"
