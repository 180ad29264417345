"""The hash-chained audit log: append decisions, read them back, prove nothing moved.

The log is a sink the caller wires in (the guard or gateway calls
``append`` with the verdict it just produced); the core verifier never
imports it. Everything about the chain (what a record holds, how it is
hashed, what verification checks) lives here once, over a small backend
protocol, so SQLite and PostgreSQL chains are byte-for-byte the same kind
of chain and one ``verify`` serves both.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from mcp_attest.audit.backend import AuditBackend, RecordQuery
from mcp_attest.audit.checkpoint import Checkpoint, CheckpointSigner
from mcp_attest.audit.record import (
    GENESIS_HASH,
    AuditRecord,
    AuditUnavailableError,
    RecordDraft,
    StoredRow,
    index_columns,
    record_hash,
)
from mcp_attest.canonical import CanonicalizationError, canonicalize
from mcp_attest.envelope import signing_input
from mcp_attest.keys import Keyring
from mcp_attest.verdict import Verdict, format_rfc3339

__all__ = ["AuditLog", "BrokenRecord", "ChainReport"]

logger = logging.getLogger("mcp_attest.audit")

_PAGE = 1000
_IDENTITY_FACTS = ("iss", "sub", "secretVersion", "alg")


@dataclass(frozen=True, slots=True)
class BrokenRecord:
    """The first record at which the chain stops proving itself, and why."""

    seq: int
    problem: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of ``AuditLog.verify``; ``ok`` is the only verdict that matters."""

    location: str
    chain_id: str
    records: int
    head_seq: int
    head_hash: str
    checkpoints: int
    checkpoint_signatures_checked: bool
    envelopes_verified: int
    broken: BrokenRecord | None
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when every link, checkpoint and checked envelope holds."""
        return self.broken is None

    def to_dict(self) -> dict[str, Any]:
        """The ``audit verify --json`` document."""
        return {
            "ok": self.ok,
            "location": self.location,
            "chainId": self.chain_id,
            "records": self.records,
            "headSeq": self.head_seq,
            "headHash": self.head_hash,
            "checkpoints": self.checkpoints,
            "checkpointSignaturesChecked": self.checkpoint_signatures_checked,
            "envelopesVerified": self.envelopes_verified,
            "broken": None
            if self.broken is None
            else {"seq": self.broken.seq, "problem": self.broken.problem},
            "warnings": list(self.warnings),
        }


class AuditLog:
    """An append-only, hash-chained record of verifier decisions.

    ``store_envelope`` (default on) keeps each envelope so decisions can be
    re-verified offline; note that an identity ``argsProjection`` inside
    it IS the arguments, so turn it off where arguments are secret.
    ``record_fields`` names top-level argument fields whose values are
    stored in clear; everything else is only digested. With
    ``checkpoint_signer``, a signed checkpoint of the head is written every
    ``checkpoint_every`` records and on ``close``.
    """

    def __init__(
        self,
        backend: AuditBackend,
        *,
        store_envelope: bool = True,
        record_fields: Collection[str] = (),
        checkpoint_signer: CheckpointSigner | None = None,
        checkpoint_every: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be positive")
        self.backend = backend
        self.store_envelope = store_envelope
        self.record_fields = frozenset(record_fields)
        self.checkpoint_signer = checkpoint_signer
        self.checkpoint_every = checkpoint_every
        self._clock = clock
        self._closed = False
        self._close_lock = threading.Lock()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def location(self) -> str:
        """Where the chain lives, for messages."""
        return self.backend.location

    # -- writing -----------------------------------------------------------

    def append(
        self,
        verdict: Verdict,
        *,
        tool: str,
        arguments: Mapping[str, Any] | None,
        envelope: Mapping[str, Any] | bytes | str | None = None,
    ) -> AuditRecord:
        """Record one decision; returns once the record is committed.

        Raises ``AuditUnavailableError`` when the backend cannot commit; the
        record is then not acknowledged.
        """
        draft = RecordDraft.build(
            verdict,
            chain_id=self.backend.chain_id,
            tool=tool,
            arguments=arguments,
            envelope=_envelope_object(envelope) if self.store_envelope else None,
            record_fields=self.record_fields,
        )
        row = self.backend.append(draft, self._clock())
        if self.checkpoint_signer is not None and row.seq % self.checkpoint_every == 0:
            self._checkpoint(row.seq, row.hash)
        return draft.record(row)

    def checkpoint(self) -> int | None:
        """Sign the current head now; returns its seq (None without a signer or records)."""
        seq, head = self.backend.head()
        if self.checkpoint_signer is None or seq == 0:
            return None
        self._checkpoint(seq, head)
        return seq

    def _checkpoint(self, seq: int, head: str) -> None:
        """A failed checkpoint must not un-acknowledge a committed record; the next one catches up."""
        assert self.checkpoint_signer is not None
        body = self.checkpoint_signer.sign(
            chain_id=self.backend.chain_id, seq=seq, head_hash=head, now=self._clock()
        )
        try:
            self.backend.add_checkpoint(seq, body)
        except AuditUnavailableError as exc:
            logger.warning("audit checkpoint at seq %d not written: %s", seq, exc)

    def close(self) -> None:
        """Checkpoint the head (so a cut tail shows), then release the backend."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        try:
            self.checkpoint()
        except AuditUnavailableError as exc:
            logger.warning("final audit checkpoint not written: %s", exc)
        finally:
            self.backend.close()

    # -- reading -----------------------------------------------------------

    def records(
        self,
        query: RecordQuery | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
        sub: str | None = None,
        tool: str | None = None,
        reason: str | None = None,
    ) -> Iterator[AuditRecord]:
        """Matching records by ascending seq; ``until`` is exclusive."""
        q = query or RecordQuery(since=since, until=until, sub=sub, tool=tool, reason=reason)
        for row in self._rows(q):
            yield AuditRecord.from_row(row)

    def _rows(self, query: RecordQuery) -> Iterator[StoredRow]:
        """Page through rows so no database cursor outlives one call."""
        remaining = query.limit
        after = query.after_seq
        while remaining is None or remaining > 0:
            size = _PAGE if remaining is None else min(_PAGE, remaining)
            page = self.backend.rows(replace(query, after_seq=after, limit=size, newest_first=False))
            yield from page
            if len(page) < size:
                return
            after = page[-1].seq
            if remaining is not None:
                remaining -= len(page)

    def tail(self, count: int = 10) -> list[AuditRecord]:
        """The newest ``count`` records, oldest first."""
        page = self.backend.rows(RecordQuery(limit=count, newest_first=True))
        return [AuditRecord.from_row(row) for row in reversed(page)]

    def follow(
        self, after_seq: int, *, interval: float = 0.5, stop: Callable[[], bool] = lambda: False
    ) -> Iterator[AuditRecord]:
        """New records as other writers append them, polling every ``interval`` seconds."""
        while not stop():
            fresh = list(self.records(RecordQuery(after_seq=after_seq)))
            yield from fresh
            if fresh:
                after_seq = fresh[-1].seq
            else:
                time.sleep(interval)

    # -- verifying ---------------------------------------------------------

    def verify(
        self, keyring: Keyring | None = None, *, checkpoint_keys: Keyring | None = None
    ) -> ChainReport:
        """Check every link and checkpoint; with ``keyring``, re-verify stored envelopes.

        Envelopes are re-checked with the key objects directly rather than
        a full ``Verifier``: their time window and nonce were spent when
        they were decided, so only the signature and the attestation id
        are still meaningful. Checkpoints are read before records: records
        only grow, so every checkpoint read names a record the scan will see.
        """
        return _Verification(self, keyring, checkpoint_keys).run()


def _envelope_object(envelope: Mapping[str, Any] | bytes | str | None) -> Mapping[str, Any] | None:
    """Accept the envelope in any form the verifier does; unreadable ones are noted, not fatal."""
    if envelope is None or isinstance(envelope, Mapping):
        return envelope
    try:
        parsed = orjson.loads(envelope)
    except orjson.JSONDecodeError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"unparsed": True}


@dataclass
class _Verification:
    """State of one ``verify`` run, so each check is a small method."""

    log: AuditLog
    keyring: Keyring | None
    checkpoint_keys: Keyring | None
    records: int = 0
    envelopes: int = 0
    pending: dict[int, tuple[Checkpoint | None, str | None]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def run(self) -> ChainReport:
        backend = self.log.backend
        stored = backend.checkpoints()
        self._load_checkpoints(stored)
        prev_seq, prev_hash = 0, GENESIS_HASH
        broken: BrokenRecord | None = None
        for row in self.log._rows(RecordQuery()):
            problem = self._check_row(row, prev_seq, prev_hash)
            if problem is not None:
                broken = problem
                break
            self.records += 1
            prev_seq, prev_hash = row.seq, row.hash
        if broken is None:
            broken = self._checkpoints_beyond(prev_seq)
        self._note_coverage(stored, prev_seq)
        return ChainReport(
            location=backend.location,
            chain_id=backend.chain_id,
            records=self.records,
            head_seq=prev_seq,
            head_hash=prev_hash,
            checkpoints=len(stored),
            checkpoint_signatures_checked=self.checkpoint_keys is not None,
            envelopes_verified=self.envelopes,
            broken=broken,
            warnings=tuple(self.warnings),
        )

    def _load_checkpoints(self, stored: list[tuple[int, bytes]]) -> None:
        """Parse and signature-check checkpoints up front; problems wait for their seq."""
        chain_id = self.log.backend.chain_id
        for seq, body in stored:
            try:
                cp: Checkpoint | None = Checkpoint.parse(body)
            except ValueError as exc:
                self.pending[seq] = (None, f"checkpoint at seq {seq} is unreadable: {exc}")
                continue
            assert cp is not None
            problem = None
            if cp.seq != seq or cp.chain_id != chain_id:
                problem = f"checkpoint stored at seq {seq} is for seq {cp.seq} of chain {cp.chain_id}"
            elif self.checkpoint_keys is not None:
                problem = cp.signature_problem(self.checkpoint_keys)
            self.pending[seq] = (cp, problem)

    def _check_row(self, row: StoredRow, prev_seq: int, prev_hash: str) -> BrokenRecord | None:
        expected = prev_seq + 1
        if row.seq != expected:
            return BrokenRecord(expected, f"record {expected} is missing (the next stored one is {row.seq})")
        problem = self._record_problem(row, prev_hash)
        if problem is None and row.seq in self.pending:
            problem = self._checkpoint_problem(row)
        return None if problem is None else BrokenRecord(row.seq, problem)

    def _record_problem(self, row: StoredRow, prev_hash: str) -> str | None:
        """Checks ordered so the message names the likeliest tampering first."""
        if record_hash(row.body) != row.hash:
            return "hash does not match the record's content (the record was edited)"
        try:
            record = AuditRecord.from_row(row)
            canonical = canonicalize(record.body) == row.body
        except (ValueError, CanonicalizationError):
            return "record body is not a JSON object"
        if not canonical:
            return "record body is not in canonical (JCS) form"
        body = record.body
        if body.get("chainId") != self.log.backend.chain_id:
            return f"record belongs to chain {body.get('chainId')}, not {self.log.backend.chain_id}"
        if body.get("seq") != row.seq:
            return f"record says seq {body.get('seq')} but is stored as seq {row.seq} (records reordered)"
        if body.get("prevHash") != prev_hash:
            return f"prevHash does not match record {row.seq - 1} (an earlier record was edited or moved)"
        if index_columns(body, row.ts)[1:] != (row.sub, row.tool, row.reason) or body.get(
            "recordedAt"
        ) != format_rfc3339(row.ts):
            return "index columns (ts, sub, tool, reason) disagree with the record (edited)"
        return self._envelope_problem(record)

    def _envelope_problem(self, record: AuditRecord) -> str | None:
        """A1 ties the stored envelope to the facts; the keyring re-checks its signature."""
        env, facts = record.envelope, record.facts
        if env is None:
            return None
        try:
            signed = signing_input(env)
        except CanonicalizationError:
            return "stored envelope cannot be canonicalized"
        attestation_id = facts.get("attestationId")
        if attestation_id is not None and hashlib.sha256(signed).hexdigest() != attestation_id:
            return "stored envelope does not match the record's attestationId"
        if self.keyring is None or facts.get("secretVersion") is None:
            return None
        ia = env.get("issuerAsserted")
        if not isinstance(ia, dict) or any(facts.get(k) != ia.get(k) for k in _IDENTITY_FACTS):
            return "facts (iss, sub, secretVersion, alg) disagree with the stored envelope"
        key = self.keyring.get(str(ia["iss"]), str(ia["secretVersion"]))
        if key is None:
            return f"no key {ia['iss']}/{ia['secretVersion']} in the keyring to re-verify the envelope"
        if key.alg != ia["alg"] or not key.verify(str(env.get("signature")), signed):
            return "stored envelope's signature does not verify"
        self.envelopes += 1
        return None

    def _checkpoint_problem(self, row: StoredRow) -> str | None:
        cp, problem = self.pending.pop(row.seq)
        if problem is None and cp is not None and cp.hash != row.hash:
            problem = "record differs from the signed checkpoint at its seq (the chain was rewritten)"
        return problem

    def _checkpoints_beyond(self, head: int) -> BrokenRecord | None:
        """Checkpoints past the last record prove the tail was cut."""
        if not self.pending:
            return None
        seq = min(self.pending)
        cp, problem = self.pending[seq]
        if seq <= head:  # pragma: no cover - every seq <= head was consumed by the scan
            return BrokenRecord(seq, problem or "checkpoint not checked")
        when = "" if cp is None else f" signed at {cp.body.get('time')}"
        return BrokenRecord(
            head + 1,
            f"records from seq {head + 1} on are missing: a checkpoint{when} names seq {seq} "
            "(the tail was truncated)",
        )

    def _note_coverage(self, stored: list[tuple[int, bytes]], head: int) -> None:
        if not stored:
            self.warnings.append("no checkpoints: a truncated tail would go unnoticed")
        elif stored[-1][0] < head:
            self.warnings.append(f"records {stored[-1][0] + 1}..{head} are after the last checkpoint")
        if stored and self.checkpoint_keys is None:
            self.warnings.append("checkpoint signatures not checked (no checkpoint keyring given)")
