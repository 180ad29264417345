"""Does a record's stored decision follow from its stored envelope?

Whoever can write the audit table can write any facts they like, and
re-seal the chain around them. The envelope, though, carries an issuer's
signature the insider cannot produce. So ``audit verify --keys`` holds
every record to its envelope: the identity facts, the tool, the plan
entry, the server, the time and the argument digest must all be what a
verifier would have asserted for that envelope, and an accepted decision
must stand on an envelope that verifies. Only a record whose envelope the
insider cannot forge survives this; a forged or edited decision does not.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from mcp_attest.canonical import CanonicalizationError, canonicalize, parse_arguments
from mcp_attest.envelope import Envelope, MalformedEnvelopeError, b64url_encode, parse_iat, signing_input
from mcp_attest.keys import KeySource
from mcp_attest.verdict import ArgsBinding, Reason

__all__ = ["RecordFacts", "envelope_problem", "facts_problem"]

_IDENTITY = (("iss", "iss"), ("sub", "sub"), ("secretVersion", "secret_version"), ("alg", "alg"))
_REASONS = frozenset(r.value for r in Reason)
_BINDINGS = frozenset(b.value for b in ArgsBinding)
_MAX_SKEW = 300  # the largest skew a verifier accepts, so no honest record is refused
_MAX_TTL = 86400  # likewise the largest max_ttl


class RecordFacts:
    """The parts of one record body the cross-checks read, typed once."""

    def __init__(self, body: Mapping[str, Any]) -> None:
        facts = body.get("facts")
        self.facts: Mapping[str, Any] = facts if isinstance(facts, dict) else {}
        env = body.get("envelope")
        self.envelope: Mapping[str, Any] | None = env if isinstance(env, dict) else None
        self.tool = body.get("tool")
        self.args_digest = body.get("argsDigest")

    @property
    def accepted(self) -> bool:
        return self.facts.get("accepted") is True


def facts_problem(rec: RecordFacts) -> str | None:
    """The decision must be one a verifier can produce: accepted with no reason, or one of eight."""
    accepted, reason = rec.facts.get("accepted"), rec.facts.get("reason")
    if not isinstance(accepted, bool):
        return "facts.accepted is not a boolean"
    if accepted and reason is not None:
        return f"an accepted decision with reason {reason!r}"
    if not accepted and reason not in _REASONS:
        return f"a rejected decision with reason {reason!r}, not one of the eight"
    binding = rec.facts.get("argsBinding")
    if binding is not None and binding not in _BINDINGS:
        return f"unknown argsBinding {binding!r}"
    return None


def envelope_problem(rec: RecordFacts, keys: KeySource | None) -> str | None:
    """Why the stored envelope does not support the stored facts, or None.

    Without ``keys`` only what needs no key is checked (the attestation id
    and, where the verifier asserted them, identity and plan facts); with
    ``keys`` every asserted identity is re-verified, and an accepted,
    attested decision must have everything a verifier checked line up.
    """
    env, facts = rec.envelope, rec.facts
    assert env is not None
    try:
        signed = signing_input(env)
    except CanonicalizationError:
        return "stored envelope cannot be canonicalized"
    attestation_id = facts.get("attestationId")
    if attestation_id is not None and hashlib.sha256(signed).hexdigest() != attestation_id:
        return "stored envelope does not match the record's attestationId"
    if facts.get("secretVersion") is None and not rec.accepted:
        return None  # rejected before the verifier asserted who signed: nothing more to hold it to
    try:
        parsed = Envelope.from_wire(env, max_ttl=_MAX_TTL)
    except MalformedEnvelopeError as exc:
        return f"stored envelope is malformed ({exc.detail})"
    ia = parsed.issuer_asserted
    for fact, attr in _IDENTITY:
        if facts.get(fact) != getattr(ia, attr):
            return f"facts.{fact} {facts.get(fact)!r} disagrees with the stored envelope"
    if keys is not None:
        key = keys.get(ia.iss, ia.secret_version)
        if key is None:
            return f"no key {ia.iss}/{ia.secret_version} in the keyring to re-verify the envelope"
        if key.alg != ia.alg or not key.verify(parsed.signature, signed):
            return "stored envelope's signature does not verify"
    return _plan_problem(rec, parsed) if rec.accepted else None


def _plan_problem(rec: RecordFacts, env: Envelope) -> str | None:
    """An accepted call: the plan entry, server, time and arguments must be the envelope's."""
    facts = rec.facts
    index = facts.get("toolCallIndex")
    if type(index) is not int or not 0 <= index < len(env.tool_calls):
        return f"facts.toolCallIndex {index!r} names no entry of the envelope's plan"
    entry = env.tool_calls[index]
    if rec.tool != entry.name:
        return f"tool {rec.tool!r} is not the envelope's entry {index} ({entry.name!r})"
    if facts.get("verifierFingerprint") != entry.server_fingerprint:
        return "facts.verifierFingerprint is not the server the envelope's entry names"
    problem = _time_problem(facts.get("verifiedAt"), env)
    if problem is not None:
        return problem
    return _binding_problem(rec, entry.args_ref.digest if entry.args_ref else None, entry.args_projection)


def _time_problem(verified_at: Any, env: Envelope) -> str | None:
    if not isinstance(verified_at, str):
        return "facts.verifiedAt is missing"
    try:
        when = parse_iat(verified_at)
    except ValueError:
        return f"facts.verifiedAt {verified_at!r} is not a time"
    iat = parse_iat(env.issuer_asserted.iat)
    if not iat - _MAX_SKEW <= when <= iat + env.issuer_asserted.exp_seconds + _MAX_SKEW:
        return "accepted outside the envelope's validity window"
    return None


def _binding_problem(rec: RecordFacts, ref_digest: str | None, projection: str | None) -> str | None:
    """The stored argument digest must be what the binding fact says the envelope committed to."""
    binding, digest = rec.facts.get("argsBinding"), rec.args_digest
    if binding == ArgsBinding.REF_DIGEST:
        if ref_digest is None or digest != ref_digest:
            return "argsDigest is not the envelope's argsRef digest (binding ref-digest)"
    elif binding == ArgsBinding.IDENTITY:
        if projection is None or digest != _projection_digest(projection):
            return "argsDigest is not the digest of the envelope's argsProjection (binding identity)"
    elif binding is None:
        return "an accepted, attested decision without argsBinding"
    return None  # ref-resolved needs the referenced content; redacted binds nothing


def _projection_digest(projection: str) -> str | None:
    try:
        return b64url_encode(hashlib.sha256(canonicalize(parse_arguments(projection))).digest())
    except (CanonicalizationError, ValueError):
        return None
