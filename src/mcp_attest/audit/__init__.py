"""Evidence: a hash-chained, append-only log of verifier decisions.

The log is a sink: the guard or gateway hands it each verdict after the
verifier has decided, and the core never imports this package. Open one
from a URL with ``mcp_attest.stores.open_audit_log``.
"""

from mcp_attest.audit.backend import AuditBackend, RecordQuery
from mcp_attest.audit.checkpoint import Checkpoint, CheckpointSigner
from mcp_attest.audit.log import AuditLog, BrokenRecord, ChainReport
from mcp_attest.audit.record import (
    AuditConfigError,
    AuditError,
    AuditRecord,
    AuditRecordError,
    AuditUnavailableError,
)
from mcp_attest.audit.sqlite import SQLiteAuditBackend

__all__ = [
    "AuditBackend",
    "AuditConfigError",
    "AuditError",
    "AuditLog",
    "AuditRecord",
    "AuditRecordError",
    "AuditUnavailableError",
    "BrokenRecord",
    "ChainReport",
    "Checkpoint",
    "CheckpointSigner",
    "RecordQuery",
    "SQLiteAuditBackend",
]
