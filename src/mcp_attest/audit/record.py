"""One audit record: what it holds, how it is hashed, how it is stored.

A record is the verifier's own facts (PROFILE section 7) for one decision,
never the issuer's claims echoed back, plus what an auditor needs to tie
them to the call: the tool name, a digest of the runtime arguments and,
by default, the envelope itself so the decision can be re-verified offline.
Its ``hash`` covers the JCS bytes of everything else, ``prevHash`` included,
so each record pins every record before it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from mcp_attest.canonical import CanonicalizationError, canonicalize, canonicalize_arguments
from mcp_attest.envelope import b64url_encode
from mcp_attest.errors import ConfigurationError, Error
from mcp_attest.verdict import Verdict, format_rfc3339

__all__ = [
    "COLUMNS",
    "GENESIS_HASH",
    "RECORD_VERSION",
    "AuditConfigError",
    "AuditError",
    "AuditRecord",
    "AuditRecordError",
    "AuditUnavailableError",
    "RecordDraft",
    "StoredRow",
    "record_hash",
]

RECORD_VERSION = 1
GENESIS_HASH = "0" * 64
COLUMNS = "seq, hash, body, ts, sub, tool, reason"
_PLACEHOLDER_NAME = "recordedAt"  # the middle chain member: prevHash < recordedAt < seq
_PLACEHOLDER = "\x00"
_PLACEHOLDER_JCS = b'"recordedAt":"\\u0000"'
_HEX64 = re.compile(r"[0-9a-f]{64}")


class AuditError(Error):
    """Base of every audit-log failure."""


class AuditUnavailableError(AuditError):
    """The backend cannot take or give records right now.

    An append that raises this was not acknowledged: it may or may not be
    stored, and the caller decides whether the decision may stand without
    its record (fail closed is the safe choice).
    """


class AuditConfigError(AuditError, ConfigurationError):
    """A URL, schema or option that can never work; retrying will not help."""


class AuditRecordError(AuditError, ValueError):
    """A stored record that cannot be read back; the message names its seq.

    Only an edited database holds one (a body that is not JSON, not an
    object, or nested deeper than JCS writes). ``audit verify`` reports it
    as the chain's first bad record; readers that print records stop there.
    A ``ValueError`` too, as ``AuditRecord.from_row`` always documented.
    """


def record_hash(body: bytes) -> str:
    """Lowercase hex SHA-256 of a record's JCS bytes without ``hash``."""
    return hashlib.sha256(body).hexdigest()


@dataclass(slots=True)  # not frozen: built once per append, and frozen init costs microseconds
class StoredRow:
    """A record as a backend stores it: the JCS body plus index columns.

    The index columns duplicate fields of the body only so that ``export``
    filters run in the database; verification checks they still agree.
    """

    seq: int
    hash: str
    body: bytes
    ts: float
    sub: str | None
    tool: str
    reason: str | None

    @classmethod
    def from_db(cls, row: Sequence[Any]) -> StoredRow:
        """From a ``SELECT seq, hash, body, ts, sub, tool, reason`` row of any driver."""
        seq, hash_, body, ts, sub, tool, reason = row
        data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        return cls(int(seq), str(hash_), data, float(ts), sub, str(tool), reason)

    def db_values(self) -> tuple[int, str, str, float, str | None, str, str | None]:
        """The same columns, in the same order, for an INSERT."""
        return (self.seq, self.hash, self.body.decode("utf-8"), self.ts, self.sub, self.tool, self.reason)


def index_columns(body: Mapping[str, Any], ts: float) -> tuple[float, str | None, str, str | None]:
    """The (ts, sub, tool, reason) columns a body implies."""
    facts = body.get("facts") or {}
    return ts, facts.get("sub"), str(body.get("tool")), facts.get("reason")


@dataclass(slots=True)  # not frozen: built once per append, and frozen init costs microseconds
class RecordDraft:
    """Everything of a record that does not depend on its place in the chain.

    Built, and serialized, before the backend takes its lock, so that the
    serialized part of an append stays as short as possible. The chain
    fields (``prevHash``, ``recordedAt``, ``seq``) sort between ``facts``
    and ``tool`` under JCS, and every member name is a fixed ASCII name, so
    the record's JCS bytes are exactly ``prefix + chain members + suffix``:
    sealing is a concatenation, which a database can do too (PostgreSQL
    seals inside its append function, in one round trip).
    """

    fields: dict[str, Any]
    prefix: bytes
    suffix: bytes
    tool: str
    sub: str | None
    reason: str | None

    @classmethod
    def build(
        cls,
        verdict: Verdict,
        *,
        chain_id: str,
        tool: str,
        arguments: Mapping[str, Any] | None,
        envelope: Mapping[str, Any] | None,
        record_fields: Collection[str] = (),
    ) -> RecordDraft:
        """Digest the arguments, keep only opted-in fields, attach the envelope."""
        tool = _printable(tool)
        fields: dict[str, Any] = {
            "v": RECORD_VERSION,
            "chainId": chain_id,
            "tool": tool,
            "facts": verdict.to_dict(),
            "argsDigest": None,
        }
        # None: the decision came before the arguments were judged (a gateway
        # refusal, a verdict before V8); digesting them would be work for nothing.
        if arguments is not None:
            # A dict takes canonicalize's fast path; any other Mapping is copied into one.
            # Anything else (an untyped caller's list or string) is digested as the JSON
            # it is: dict() would raise, or quietly read [[1, 2]] as {1: 2}.
            args: Any = arguments
            if type(args) is not dict and isinstance(args, Mapping):
                args = dict(args)
            try:
                fields["argsDigest"] = b64url_encode(hashlib.sha256(canonicalize_arguments(args)).digest())
            except CanonicalizationError as exc:
                # The verifier refused these arguments for the same reason (C3);
                # the record says so instead of inventing a digest.
                fields["argsError"] = exc.detail
            else:
                if record_fields and type(args) is dict:
                    kept = {name: args[name] for name in sorted(record_fields) if name in args}
                    if kept:
                        fields["args"] = kept
        if envelope is not None:
            fields["envelope"] = dict(envelope)
        # One JCS pass over the whole record, with a placeholder where the chain
        # members go (they sort together, between "facts" and "tool").
        fields[_PLACEHOLDER_NAME] = _PLACEHOLDER
        try:
            whole = canonicalize(fields)
        except CanonicalizationError as exc:
            # Only a rejected envelope can hold what JCS cannot write (a float,
            # a lone surrogate); the decision is still recorded, without it.
            fields["envelopeError"] = exc.detail
            fields.pop("envelope", None)
            whole = canonicalize(fields)
        del fields[_PLACEHOLDER_NAME]
        # The last occurrence is the top-level member: only "tool" (a string,
        # whose quotes JCS escapes) and "v" follow it.
        cut = whole.rindex(_PLACEHOLDER_JCS)
        facts = fields["facts"]
        return cls(
            fields, whole[:cut], whole[cut + len(_PLACEHOLDER_JCS) :], tool, facts["sub"], facts["reason"]
        )

    def seal(self, seq: int, prev_hash: str, now: float) -> StoredRow:
        """Place the draft at ``seq`` after ``prev_hash`` and hash it."""
        if not _HEX64.fullmatch(prev_hash):
            raise AuditUnavailableError(f"chain head hash {prev_hash!r} is not a SHA-256 hex digest")
        data = self.prefix + chain_members(seq, prev_hash, format_rfc3339(now)).encode("ascii") + self.suffix
        return StoredRow(seq, record_hash(data), data, now, self.sub, self.tool, self.reason)

    def record(self, row: StoredRow) -> AuditRecord:
        """The record ``seal`` put into ``row``, without parsing its bytes back.

        The chain members sit at fixed offsets right after ``prefix``: a
        64-digit hash, then a 24-character timestamp (``chain_members``).
        """
        start = len(self.prefix) + len('"prevHash":"')
        prev_hash = row.body[start : start + 64].decode("ascii")
        start += 64 + len('","recordedAt":"')
        chain = {
            "prevHash": prev_hash,
            "recordedAt": row.body[start : start + 24].decode("ascii"),
            "seq": row.seq,
        }
        return AuditRecord(row.seq, row.hash, {**self.fields, **chain})


def _printable(text: str) -> str:
    """A client-chosen name with a lone surrogate is still recorded, escaped."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def chain_members(seq: int, prev_hash: str, recorded_at: str) -> str:
    """The JCS text of the three chain members, in their sorted order.

    The PostgreSQL append function builds the same text; a test keeps the two equal.
    """
    return f'"prevHash":"{prev_hash}","recordedAt":"{recorded_at}","seq":{seq}'


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored record, read back; ``body`` is everything but ``hash``."""

    seq: int
    hash: str
    body: Mapping[str, Any]

    @classmethod
    def from_row(cls, row: StoredRow) -> AuditRecord:
        """Parse a stored body; raises ``AuditRecordError`` when it is not a JSON object."""
        try:
            body = orjson.loads(row.body)
        except orjson.JSONDecodeError as exc:
            raise AuditRecordError(f"record {row.seq}: body is not JSON ({exc})") from None
        if not isinstance(body, dict):
            raise AuditRecordError(f"record {row.seq}: body is not a JSON object")
        return cls(row.seq, row.hash, body)

    @property
    def facts(self) -> Mapping[str, Any]:
        """The verifier-asserted facts of the decision (section 7)."""
        facts = self.body.get("facts")
        return facts if isinstance(facts, dict) else {}

    @property
    def tool(self) -> str | None:
        """The tool the decision was about."""
        tool = self.body.get("tool")
        return tool if isinstance(tool, str) else None

    @property
    def envelope(self) -> Mapping[str, Any] | None:
        """The stored envelope, when the log keeps envelopes."""
        env = self.body.get("envelope")
        return env if isinstance(env, dict) else None

    def to_dict(self) -> dict[str, Any]:
        """The whole record, ``hash`` included: one line of ``audit export``."""
        return {**self.body, "hash": self.hash}

    def to_json(self) -> bytes:
        """JCS bytes of ``to_dict``, so an exported line re-hashes byte for byte.

        Raises ``AuditRecordError`` when the stored body holds what JCS
        cannot write (only an edited database can: nesting past 64).
        """
        try:
            return canonicalize(self.to_dict())
        except CanonicalizationError as exc:
            raise AuditRecordError(f"record {self.seq}: body cannot be written as JCS ({exc})") from None
