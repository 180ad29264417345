"""mcp-attest: SEP-2787 tool-call attestation for MCP.

The public API is what ``__all__`` lists; every other name is internal and
may change without notice.
"""

from mcp_attest._build import active_build
from mcp_attest.algorithms import ALGORITHMS, ES256Key, HS256Key, Key, KeyMaterialError, RS256Key
from mcp_attest.canonical import (
    CanonicalizationError,
    canonicalize,
    parse_arguments,
)
from mcp_attest.discovery import DiscoveringKeyring
from mcp_attest.envelope import (
    ArgsRef,
    Envelope,
    IssuerAsserted,
    MalformedEnvelopeError,
    PlannerDeclared,
    ToolCall,
)
from mcp_attest.errors import ConfigurationError, Error
from mcp_attest.fingerprint import server_fingerprint, tls_key_fingerprint
from mcp_attest.issuer import Issuer, PlannedCall
from mcp_attest.keys import Keyring, KeyringError, KeySource, generate_key
from mcp_attest.receipts import RECEIPT_CAPABILITY, ReceiptCheck, ReceiptSigner, result_digest, verify_receipt
from mcp_attest.replay import (
    InMemoryReplayStore,
    ReplayStore,
    SQLiteReplayStore,
    StoreUnavailableError,
)
from mcp_attest.resolvers import FileResolver, ResolverError, resolve_data_uri
from mcp_attest.transport import CAPABILITY, HEADER_NAME, META_KEY, HeaderError, decode_header, encode_header
from mcp_attest.verdict import ArgsBinding, AttestationRejectedError, Reason, Verdict
from mcp_attest.verifier import Verifier, VerifierPolicy

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS",
    "CAPABILITY",
    "HEADER_NAME",
    "META_KEY",
    "RECEIPT_CAPABILITY",
    "ArgsBinding",
    "ArgsRef",
    "AttestationRejectedError",
    "CanonicalizationError",
    "ConfigurationError",
    "DiscoveringKeyring",
    "ES256Key",
    "Envelope",
    "Error",
    "FileResolver",
    "HS256Key",
    "HeaderError",
    "InMemoryReplayStore",
    "Issuer",
    "IssuerAsserted",
    "Key",
    "KeyMaterialError",
    "KeySource",
    "Keyring",
    "KeyringError",
    "MalformedEnvelopeError",
    "PlannedCall",
    "PlannerDeclared",
    "RS256Key",
    "Reason",
    "ReceiptCheck",
    "ReceiptSigner",
    "ReplayStore",
    "ResolverError",
    "SQLiteReplayStore",
    "StoreUnavailableError",
    "ToolCall",
    "Verdict",
    "Verifier",
    "VerifierPolicy",
    "__version__",
    "active_build",
    "canonicalize",
    "decode_header",
    "encode_header",
    "generate_key",
    "parse_arguments",
    "resolve_data_uri",
    "result_digest",
    "server_fingerprint",
    "tls_key_fingerprint",
    "verify_receipt",
]
