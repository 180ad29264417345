"""Every detail code the library emits, with a one-line meaning each.

Verdicts, refusals and receipt checks name what went wrong with a stable
dotted code. Call sites keep the code as a plain string literal (the same
string is the key here), so one table can be checked against the code base
from both sides: ``tests/core/test_core_details.py`` fails when a call site
emits a code this table lacks or the table lists a code nothing emits, and
the verifier asserts, in debug runs, that a rejection's code is registered
under the reason it is reported with. ``docs/details.md`` is rendered from
these tables by ``markdown``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final, NamedTuple

from mcp_attest.verdict import Reason

__all__ = [
    "DETAILS",
    "GATEWAY_DETAILS",
    "RECEIPT_PROBLEMS",
    "REFUSAL_DETAILS",
    "VERDICT_DETAILS",
    "VerdictDetail",
    "markdown",
]


class VerdictDetail(NamedTuple):
    """A verdict's detail code: the one reason it is reported with, and what it means."""

    reason: Reason
    meaning: str


# Grouped by reason, in verification-step order within each group.
_VERDICT_ROWS: tuple[tuple[Reason, tuple[tuple[str, str], ...]], ...] = (
    (Reason.ATTESTATION_REQUIRED, (
        ("attestation.absent", "No envelope on either transport. A server that does not require one accepts "
                               "the call with this detail and no attestation id."),
    )),
    (Reason.SIGNATURE_INVALID, (
        ("malformed.header", "X-MCP-Attestation is not unpadded base64url of at most 64 KiB."),
        ("transport.conflict", "The header and `_meta` carry envelopes that differ (V11)."),
        ("malformed.too_large", "The envelope exceeds 64 KiB (E1)."),
        ("malformed.bom", "The envelope starts with a UTF-8 byte order mark (C2)."),
        ("malformed.utf8", "The envelope bytes are not valid UTF-8 (C2)."),
        ("malformed.json", "The envelope is not JSON."),
        ("malformed.duplicate_key", "An object in the envelope repeats a key (C2)."),
        ("malformed.surrogate", "A string in the envelope holds a lone UTF-16 surrogate (C2)."),
        ("malformed.float", "A number in the envelope is not an integer (C2)."),
        ("malformed.negative_zero", "A number in the envelope is negative zero (C2)."),
        ("malformed.non_finite", "NaN or Infinity in the envelope (C2)."),
        ("malformed.int_range", "An integer in the envelope is outside +-(2^53-1) (C2)."),
        ("malformed.depth", "The envelope nests objects and arrays deeper than 64 (E2)."),
        ("malformed.not_object", "The envelope is not a JSON object."),
        ("malformed.type", "A field has the wrong JSON type, or a value is not a JSON type."),
        ("malformed.missing_field", "A required field is missing (E1)."),
        ("malformed.empty", "A string field is empty (E2)."),
        ("malformed.too_long", "A string field exceeds its UTF-8 length limit (E2)."),
        ("malformed.iat", "`iat` is not an RFC 3339 UTC time that exists (E3)."),
        ("malformed.exp_seconds", "`expSeconds` is not an integer in 1..max_ttl (E4)."),
        ("malformed.nonce", "`nonce` is not unpadded base64url of at least 16 bytes (E5)."),
        ("malformed.tool_calls", "`toolCalls` does not hold 1 to 64 entries (E6)."),
        ("malformed.no_commitment", "A `toolCalls` entry has neither argsRef nor argsProjection."),
        ("malformed.digest", "An argsRef digest is not the base64url of a SHA-256 digest (E7)."),
        ("malformed.signature_encoding", "`signature` is not lowercase hex of its algorithm's length (E8)."),
        ("malformed.version", "vaara-v0 dialect: `version` is not the integer 1."),
        ("malformed.alg_conflict", "vaara-v0 dialect: the top-level `alg` differs from issuerAsserted's."),
        ("malformed.canonicalization", "vaara-v0: an args block names a canonicalization other than JCS."),
        ("malformed.projection_digest", "vaara-v0: `projectionDigest` does not match the projection."),
        ("signature.mismatch", "The signature does not verify over the signing input (V3, C1)."),
        ("internal.error", "A bug inside the verifier; it is logged and the call fails closed (V12)."),
        ("gateway.not_a_request", "Gateway: a tools/call sent as a notification (no id); never forwarded."),
    )),
    (Reason.KEY_UNAVAILABLE, (
        ("alg.not_allowed", "The envelope's `alg` is not on the verifier's allowlist (K1)."),
        ("key.unknown", "No key for this `iss` and `secretVersion`."),
        ("key.alg_mismatch", "The key is bound to another algorithm than the envelope's `alg`."),
    )),
    (Reason.EXPIRED, (
        ("ttl.not_yet_valid", "`iat` lies further in the future than the skew allows."),
        ("ttl.expired", "`iat + expSeconds`, plus the skew, has passed."),
    )),
    (Reason.SERVER_MISMATCH, (
        ("server.not_in_plan", "No entry names this server's fingerprint."),
        ("server.multi_server_plan", "The plan also names other servers, which the policy forbids."),
    )),
    (Reason.TOOL_MISMATCH, (
        ("tool.not_in_plan", "No entry for this server names the called tool."),
        ("gateway.tool_definition_changed", "Gateway pinning: the tool's definition changed since it was "
                                            "pinned; refused until an operator re-pins."),
    )),
    (Reason.NONCE_REPLAY, (
        ("nonce.replayed", "Every matching entry was already used."),
        ("nonce.race", "A concurrent call claimed the entry first."),
        ("store.unavailable", "The replay store failed or is full; the call fails closed (V12)."),
    )),
    (Reason.ARGS_COMMITMENT_MISMATCH, (
        ("args.not_canonicalizable", "The runtime arguments cannot be written as JCS (C3): a duplicate key, "
                                     "-0, NaN, a number no double holds, a lone surrogate, depth over 64."),
        ("args.not_bound", "Strict binding: the only commitment is a redacted projection."),
        ("projection.not_json", "`argsProjection` is not JSON that C3 accepts."),
        ("ref.digest_mismatch", "The argsRef digest is not that of the arguments' JCS bytes."),
        ("ref.unresolvable", "The argsRef URI could not be fetched (no resolver, an error, too large)."),
        ("ref.not_json", "The content argsRef resolves to is not JSON that C3 accepts."),
        ("ref.content_mismatch", "The resolved content differs from the runtime arguments."),
    )),
)  # fmt: skip

VERDICT_DETAILS: Final[Mapping[str, VerdictDetail]] = MappingProxyType(
    {code: VerdictDetail(reason, meaning) for reason, rows in _VERDICT_ROWS for code, meaning in rows}
)

REFUSAL_DETAILS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "args.not_json": "A document read as arguments is not JSON at all (BOM, invalid UTF-8, syntax).",
        "canonical.type": "`canonicalize` was given a value that is not a JSON type.",
        "canonical.key_type": "`canonicalize` was given an object key that is not a string.",
        "canonical.surrogate": "`canonicalize` was given a string holding a lone surrogate.",
        "canonical.non_finite": "`canonicalize` was given NaN or an infinity.",
        "canonical.negative_zero": "`canonicalize` was given -0.0, which JCS cannot write.",
        "canonical.int_range": "`canonicalize` was given an integer no double holds exactly as written.",
        "canonical.depth": "`canonicalize` was given a value nested deeper than 64.",
    }
)
"""Codes of ``CanonicalizationError`` that never become a verdict's detail.

They reach callers of ``canonicalize``/``parse_arguments``, the CLI's one
line, the gateway's ``cannot_sign`` answer and the audit record's
``argsError``; a verifier reports them as ``args.not_canonicalizable``.
"""

GATEWAY_DETAILS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "call.ambiguous": "A tools/call whose own members (`name`, `arguments`, `_meta`, `attestation`, "
        "`params`) repeat, or that is not strict JSON; refused unjudged.",
        "intent.not_utf8": "Issue mode: the X-MCP-Intent header is not UTF-8; nothing is signed.",
        "intent.too_long": "Issue mode: the intent exceeds 4096 UTF-8 bytes; nothing is signed.",
    }
)
"""Details of gateway answers that are not verdicts (its log line and audit record carry them)."""

RECEIPT_PROBLEMS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "receipt.schema": "The receipt is not an object with exactly the receipt fields, typed as specified.",
        "key.unknown": "No key for the receipt's server fingerprint and `kid`.",
        "key.alg_mismatch": "The server's key is bound to another algorithm than the receipt's `alg`.",
        "signature.mismatch": "The receipt's signature does not verify.",
        "attestation.mismatch": "The receipt covers another attestation id than the one given.",
        "result.not_canonicalizable": "The tool result given cannot be written as JCS.",
        "result.mismatch": "The tool result given is not the one the receipt's digest covers.",
    }
)
"""``ReceiptCheck`` problem codes; three share a spelling with verdict details."""

DETAILS: Final[frozenset[str]] = frozenset(
    (*VERDICT_DETAILS, *REFUSAL_DETAILS, *GATEWAY_DETAILS, *RECEIPT_PROBLEMS)
)
"""Every code in the four tables."""


def _code_rows(rows: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(f"`{code}`", meaning) for code, meaning in rows]


def _table(header: str, rows: list[tuple[str, str]]) -> list[str]:
    columns = header.count("|") - 1
    return [header, "|" + " --- |" * columns, *("| " + " | ".join(row) + " |" for row in rows), ""]


def markdown() -> str:
    """``docs/details.md``: the tables above as a page, in their source order."""
    lines = [
        "# Detail codes",
        "",
        "<!-- Generated from src/mcp_attest/details.py by mcp_attest.details.markdown(); do not edit. -->",
        "",
        "Every verdict, refusal and receipt check names what went wrong with one of",
        "these codes. The `reason` is one of the draft's eight; the detail is this",
        "library's finer code, stable across releases.",
        "",
        "## Verdict details",
        "",
        "Grouped by the reason they are reported with, in verification-step order.",
        "",
        *(
            line
            for reason, rows in _VERDICT_ROWS
            for line in [f"### `{reason.value}`", "", *_table("| Detail | Meaning |", _code_rows(rows))]
        ),
        "## Refusals that are not verdicts",
        "",
        "Raised as `CanonicalizationError.detail`; a verifier reports any of them",
        "in the arguments as `args.not_canonicalizable`.",
        "",
        *_table("| Detail | Meaning |", _code_rows(REFUSAL_DETAILS.items())),
        "## Gateway answers that are not verdicts",
        "",
        "The gateway's verdict log line and audit record carry these.",
        "",
        *_table("| Detail | Meaning |", _code_rows(GATEWAY_DETAILS.items())),
        "## Receipt problems",
        "",
        "`ReceiptCheck.problem` of `verify_receipt` and `mcp-attest receipt verify`.",
        "",
        *_table("| Problem | Meaning |", _code_rows(RECEIPT_PROBLEMS.items())),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
