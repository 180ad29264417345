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

from mcp_attest.audit.backend import AuditBackend, CheckpointSink, QueuedBackend, RecordQuery
from mcp_attest.audit.checkpoint import Checkpoint, CheckpointSigner
from mcp_attest.audit.crosscheck import RecordFacts, envelope_problem, facts_problem
from mcp_attest.audit.merkle import Frontier, leaf_hash
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
from mcp_attest.keys import KeySource
from mcp_attest.verdict import Verdict, format_rfc3339, no_truth_value

__all__ = ["AuditLog", "BrokenRecord", "ChainReport"]

logger = logging.getLogger("mcp_attest.audit")

_PAGE = 1000
DEFAULT_CHECKPOINT_EVERY = 1000
DEFAULT_CHECKPOINT_INTERVAL = 60.0


@dataclass(frozen=True, slots=True)
class BrokenRecord:
    """The first record at which the chain stops proving itself, and why."""

    seq: int
    problem: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of ``AuditLog.verify``; ``accepted`` is the only verdict that matters.

    Named as on ``Verdict``, and like it refuses ``bool()``: a dataclass is
    always true, so ``if log.verify():`` would pass a broken chain.
    """

    location: str
    chain_id: str
    records: int
    head_seq: int
    head_hash: str
    root: str
    checkpoints: int
    checkpoint_signatures_checked: bool
    envelopes_verified: int
    broken: BrokenRecord | None
    warnings: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        raise no_truth_value(self)

    @property
    def accepted(self) -> bool:
        """True when every link, checkpoint and checked envelope holds."""
        return self.broken is None

    def to_dict(self) -> dict[str, Any]:
        """The ``audit verify --json`` document."""
        return {
            "accepted": self.accepted,
            "location": self.location,
            "chainId": self.chain_id,
            "records": self.records,
            "headSeq": self.head_seq,
            "headHash": self.head_hash,
            "root": self.root,
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
    ``checkpoint_signer``, a signed tree head is written when the chain's
    seq reaches a multiple of ``checkpoint_every``, every
    ``checkpoint_interval`` seconds when records arrived since the last one
    (0 turns the timer off), and on ``close``; ``witness`` receives a copy
    of every one, so deleting the log's own checkpoints shows too.
    """

    def __init__(
        self,
        backend: AuditBackend,
        *,
        store_envelope: bool = True,
        record_fields: Collection[str] = (),
        checkpoint_signer: CheckpointSigner | None = None,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL,
        witness: CheckpointSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError("checkpoint_every must be positive")
        if checkpoint_interval < 0:
            raise ValueError("checkpoint_interval must not be negative")
        self.backend = backend
        self.store_envelope = store_envelope
        self.record_fields = frozenset(record_fields)
        self.checkpoint_signer = checkpoint_signer
        self.checkpoint_every = checkpoint_every
        self.witness = witness
        self._clock = clock
        self._closed = False
        self._close_lock = threading.Lock()
        self._tree = Frontier()  # over records 1..size, as this writer last signed them
        self._own: dict[int, bytes] = {}  # leaf hashes of records this process wrote, not yet in _tree
        self._signed_seq = 0
        self._cp_lock = threading.Lock()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._queued = backend if isinstance(backend, QueuedBackend) else None
        if self._queued is not None and checkpoint_signer is not None:
            self._queued.on_sequenced = self._sequenced
        if checkpoint_signer is not None and checkpoint_interval > 0:
            self._timer = threading.Thread(
                target=self._tick, args=(checkpoint_interval,), name="audit-checkpoints", daemon=True
            )
            self._timer.start()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def location(self) -> str:
        """Where the chain lives, for messages."""
        return self.backend.location

    @property
    def remote(self) -> bool:
        """True when an append waits on a network round trip (callers move it off an event loop)."""
        return self.backend.remote

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
        draft = self._draft(verdict, tool, arguments, envelope)
        row = self.backend.append(draft, self._clock())
        if self.checkpoint_signer is not None:
            # What this process wrote, not what the table holds by the time
            # the tree head is signed: an edit in between then shows.
            self._own[row.seq] = leaf_hash(row.body)
            if row.seq % self.checkpoint_every == 0:
                self._checkpoint_quietly()
        return draft.record(row)

    def submit(
        self,
        verdict: Verdict,
        *,
        tool: str,
        arguments: Mapping[str, Any] | None,
        envelope: Mapping[str, Any] | bytes | str | None = None,
    ) -> None:
        """Record one decision; returns once the record is durable, perhaps before it is sealed.

        What the guard and the gateway call: they need the record kept, not
        its place. On PostgreSQL the record is queued (one plain INSERT) and
        sealed into the chain by a sequencer within ``sequence_interval``,
        so many writer processes do not queue on the chain's lock; other
        backends seal it at once, as ``append`` does. Raises
        ``AuditUnavailableError`` when the record cannot be made durable.
        """
        if self._queued is None:
            self.append(verdict, tool=tool, arguments=arguments, envelope=envelope)
        else:
            self._queued.enqueue(self._draft(verdict, tool, arguments, envelope), self._clock())

    def _draft(
        self,
        verdict: Verdict,
        tool: str,
        arguments: Mapping[str, Any] | None,
        envelope: Mapping[str, Any] | bytes | str | None,
    ) -> RecordDraft:
        return RecordDraft.build(
            verdict,
            chain_id=self.backend.chain_id,
            tool=tool,
            arguments=arguments,
            envelope=_envelope_object(envelope) if self.store_envelope else None,
            record_fields=self.record_fields,
        )

    def _sequenced(self, before: int, after: int) -> None:
        """A sequencer sealed ``before + 1 .. after``: checkpoint when that crossed a multiple of N."""
        if after // self.checkpoint_every > before // self.checkpoint_every:
            self._checkpoint_quietly()

    def checkpoint(self) -> int | None:
        """Sign a tree head for the current head now; returns its seq.

        None without a signer or records. Raises ``AuditUnavailableError`` when
        the head cannot be read; a checkpoint that cannot be stored is
        logged, since the records it covers are committed either way.
        """
        if self.checkpoint_signer is None:
            return None
        with self._cp_lock:
            seq, head = self.backend.head()
            if seq in (0, self._signed_seq):
                return seq or None
            root = self._root_at(seq)
            body = self.checkpoint_signer.sign(
                chain_id=self.backend.chain_id, seq=seq, head_hash=head, root=root.hex(), now=self._clock()
            )
            for sink in (self.backend, self.witness):
                if sink is None:
                    continue
                try:
                    sink.add_checkpoint(seq, body)
                except AuditUnavailableError as exc:
                    logger.warning("audit checkpoint at seq %d not written: %s", seq, exc)
            self._signed_seq = seq
            return seq

    def _root_at(self, seq: int) -> bytes:
        """Extend the tree to ``seq``: own records from memory, other writers' from the table."""
        if seq < self._tree.size:
            raise AuditUnavailableError(
                f"audit log {self.location}: head seq {seq} is below the signed tree size "
                f"{self._tree.size} (records were removed)"
            )
        while self._tree.size < seq:
            leaf = self._own.pop(self._tree.size + 1, None)
            if leaf is not None:
                self._tree.append(leaf)
                continue
            page = self.backend.rows(
                RecordQuery(after_seq=self._tree.size, limit=min(_PAGE, seq - self._tree.size))
            )
            if not page or page[0].seq != self._tree.size + 1:
                missing = self._tree.size + 1
                raise AuditUnavailableError(f"audit log {self.location}: record {missing} is missing")
            for row in page:
                if row.seq != self._tree.size + 1:
                    break
                own = self._own.pop(row.seq, b"")
                self._tree.append(own or leaf_hash(row.body))
        return self._tree.root()

    def _checkpoint_quietly(self) -> None:
        """A failed checkpoint must not un-acknowledge a committed record; the next one catches up."""
        try:
            self.checkpoint()
        except AuditUnavailableError as exc:
            logger.warning("audit checkpoint not written: %s", exc)

    @staticmethod
    def _seal_quietly(queued: QueuedBackend) -> None:
        """Seal what this process queued, so that the last checkpoint covers it."""
        try:
            queued.sequence(wait=True)
        except AuditUnavailableError as exc:
            logger.warning("audit records not sealed at close: %s", exc)

    def _tick(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._checkpoint_quietly()

    def close(self) -> None:
        """Checkpoint the head (so a cut tail shows), then release the backend and witness."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if self._timer is not None:
            self._timer.join()
        try:
            if self._queued is not None:
                self._seal_quietly(self._queued)
            self._checkpoint_quietly()
        finally:
            self.backend.close()
            if self.witness is not None:
                self.witness.close()

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
        for row in self.rows(q):
            yield AuditRecord.from_row(row)

    def rows(self, query: RecordQuery) -> Iterator[StoredRow]:
        """Stored rows, paged so no database cursor outlives one call."""
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

    def stored_checkpoints(self, witness: CheckpointSink | None = None) -> list[tuple[int, bytes]]:
        """The log's checkpoints, then the witness's (this log's own witness by default)."""
        found = list(self.backend.checkpoints())
        extra = witness or self.witness
        if extra is not None:
            found += extra.checkpoints()
        return found

    # -- verifying ---------------------------------------------------------

    def verify(
        self,
        keyring: KeySource | None = None,
        *,
        checkpoint_keys: KeySource | None = None,
        witness: CheckpointSink | None = None,
        allow_unattested: bool = False,
    ) -> ChainReport:
        """Check every link, checkpoint and tree head; with ``keyring``, hold records to envelopes.

        Envelopes are re-checked with the key objects directly rather than
        a full ``Verifier``: their time window and nonce were spent when
        they were decided, so the checks are the signature and that every
        stored fact is what a verifier would assert for that envelope
        (``crosscheck``). With ``keyring``, an accepted decision without an
        envelope is an error unless ``allow_unattested`` (logs of guards
        with ``required=False``, whose unattested calls have none).
        Checkpoints are read before records: records only grow, so every
        checkpoint read names a record the scan will see.
        """
        return _Verification(self, keyring, checkpoint_keys, witness, allow_unattested).run()


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
    keyring: KeySource | None
    checkpoint_keys: KeySource | None
    witness: CheckpointSink | None
    allow_unattested: bool
    records: int = 0
    envelopes: int = 0
    pending: dict[int, list[tuple[Checkpoint | None, str | None]]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    tree: Frontier = field(default_factory=Frontier)
    signed_at: int = 0  # the last seq whose tree head matched
    accepted: dict[bytes, int] = field(default_factory=dict)

    def run(self) -> ChainReport:
        backend = self.log.backend
        stored = self.log.stored_checkpoints(self.witness)
        self._load_checkpoints(stored)
        prev_seq, prev_hash = 0, GENESIS_HASH
        broken: BrokenRecord | None = None
        for row in self.log.rows(RecordQuery()):
            problem = self._check_row(row, prev_seq, prev_hash)
            if problem is not None:
                broken = problem
                break
            self.records += 1
            prev_seq, prev_hash = row.seq, row.hash
        if broken is None:
            broken = self._checkpoints_beyond(prev_seq)
        self._note_coverage(stored, prev_seq)
        self._note_queued()
        return ChainReport(
            location=backend.location,
            chain_id=backend.chain_id,
            records=self.records,
            head_seq=prev_seq,
            head_hash=prev_hash,
            root=self.tree.root().hex(),
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
                self.pending.setdefault(seq, []).append(
                    (None, f"checkpoint at seq {seq} is unreadable: {exc}")
                )
                continue
            assert cp is not None
            problem: str | None = None
            if cp.seq != seq or cp.chain_id != chain_id:
                problem = f"checkpoint stored at seq {seq} is for seq {cp.seq} of chain {cp.chain_id}"
            elif self.checkpoint_keys is not None:
                problem = cp.signature_problem(self.checkpoint_keys)
            self.pending.setdefault(seq, []).append((cp, problem))

    def _check_row(self, row: StoredRow, prev_seq: int, prev_hash: str) -> BrokenRecord | None:
        expected = prev_seq + 1
        if row.seq != expected:
            return BrokenRecord(expected, f"record {expected} is missing (the next stored one is {row.seq})")
        problem = self._record_problem(row, prev_hash)
        if problem is None:
            self.tree.append(leaf_hash(row.body))
            if row.seq in self.pending:
                problem = self._checkpoint_problem(row)
        return None if problem is None else BrokenRecord(row.seq, problem)

    def _record_problem(self, row: StoredRow, prev_hash: str) -> str | None:
        """Checks ordered so the message names the likeliest tampering first."""
        if record_hash(row.body) != row.hash:
            return "hash does not match the record's content (the record was edited)"
        try:
            record = AuditRecord.from_row(row)
        except ValueError:
            return "record body is not a JSON object"
        try:
            canonical = canonicalize(record.body) == row.body
        except CanonicalizationError:  # nested past 64 levels: no honest writer made it
            canonical = False
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
        return self._decision_problem(RecordFacts(body), row.seq)

    def _decision_problem(self, rec: RecordFacts, seq: int) -> str | None:
        """Whether the stored decision is one the stored envelope supports (``crosscheck``)."""
        problem = facts_problem(rec)
        if problem is not None:
            return problem
        attestation_id = rec.facts.get("attestationId")
        if rec.envelope is not None:
            problem = envelope_problem(rec, self.keyring)
            if problem is not None:
                return problem
            if self.keyring is not None and (rec.accepted or rec.facts.get("secretVersion") is not None):
                self.envelopes += 1
        elif self.keyring is not None and rec.accepted and (attestation_id or not self.allow_unattested):
            return "an accepted decision holds no envelope to re-verify (forged, or the envelope was removed)"
        if rec.accepted and isinstance(attestation_id, str):
            key = f"{attestation_id}/{rec.facts.get('toolCallIndex')}".encode()
            first = self.accepted.setdefault(hashlib.sha256(key).digest()[:16], seq)
            if first != seq:
                return (
                    f"plan entry {key.decode()} was already accepted at record {first} (replayed or copied)"
                )
        return None

    def _checkpoint_problem(self, row: StoredRow) -> str | None:
        root = self.tree.root().hex()
        for cp, found in self.pending.pop(row.seq):
            problem = found
            if problem is None and cp is not None and (cp.hash != row.hash or cp.root not in (None, root)):
                problem = (
                    f"records {self.signed_at + 1}..{row.seq} differ from the signed tree head at seq "
                    f"{row.seq} (a record in that range was edited and the chain re-sealed)"
                )
            if problem is not None:
                return problem
        self.signed_at = row.seq
        return None

    def _checkpoints_beyond(self, head: int) -> BrokenRecord | None:
        """Checkpoints past the last record prove the tail was cut."""
        if not self.pending:
            return None
        seq = min(self.pending)
        cp, problem = self.pending[seq][0]
        if seq <= head:  # pragma: no cover - every seq <= head was consumed by the scan
            return BrokenRecord(seq, problem or "checkpoint not checked")
        if problem is not None:
            return BrokenRecord(seq, problem)
        when = "" if cp is None else f" signed at {cp.body.get('time')}"
        return BrokenRecord(
            head + 1,
            f"records from seq {head + 1} on are missing: a checkpoint{when} names seq {seq} "
            "(the tail was truncated)",
        )

    def _note_coverage(self, stored: list[tuple[int, bytes]], head: int) -> None:
        last = max((seq for seq, _ in stored), default=0)
        if not stored:
            self.warnings.append("no checkpoints: a truncated tail would go unnoticed")
        elif last < head:
            self.warnings.append(f"records {last + 1}..{head} are after the last checkpoint")
        if stored and self.checkpoint_keys is None:
            self.warnings.append("checkpoint signatures not checked (no checkpoint keyring given)")

    def _note_queued(self) -> None:
        queued = self.log._queued
        waiting = 0 if queued is None else queued.pending()
        if waiting:
            self.warnings.append(
                f"{waiting} acknowledged record(s) queued, not sealed yet: a running writer seals "
                "them within its sequence interval, the next writer to open the log otherwise"
            )
