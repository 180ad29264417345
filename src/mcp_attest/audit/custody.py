"""The checkpoint key and the witness: what keeps evidence honest against the database's owner.

A tree head signed with a key the database also holds proves nothing to
someone who can write the database. So a writer keeps its checkpoint key
in its own state directory (mode 0600), generated at first start unless
one is configured, and publishes only the public half (a JWKS beside it)
for auditors; its RFC 7638 thumbprint is what operators compare out of
band. A witness is a second place, outside the log's database, that
receives every checkpoint: whoever deletes the log's checkpoints together
with its tail still leaves the witness's copies naming the missing records.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from pathlib import Path
from typing import Any

import orjson

from mcp_attest.algorithms import key_from_jwk
from mcp_attest.audit.checkpoint import Checkpoint, CheckpointSigner, jwk_thumbprint
from mcp_attest.audit.record import AuditConfigError, AuditUnavailableError
from mcp_attest.keys import Keyring, KeyringError, generate_key, keys_from_jwks

__all__ = [
    "CHECKPOINT_ISSUER",
    "FileWitness",
    "load_checkpoint_keys",
    "load_or_create_signer",
    "public_jwks_path",
    "remote_key_path",
    "sqlite_key_path",
    "state_key_path",
]

CHECKPOINT_ISSUER = "mcp-attest-audit"
KEY_FILE = "audit-checkpoint-key.json"


def public_jwks_path(private: str | os.PathLike[str]) -> Path:
    """``x.json`` -> ``x.jwks.json``: the public half lives beside the private one."""
    p = Path(private)
    return p.with_name(p.name.removesuffix(".json") + ".jwks.json")


def load_or_create_signer(path: str | os.PathLike[str]) -> CheckpointSigner:
    """The checkpoint signer kept at ``path``, created (ES256, 0600) on first use.

    The kid is the key's thumbprint, so two writers' keys never collide in
    an auditor's keyring. Creation is race-free: the key is written to a
    private temporary file and linked into place, so of two processes
    starting together one creates it and the other loads it. The public
    JWKS beside it is rewritten from the private key each time, so it can
    never drift from the key that signs.
    """
    p = Path(path)
    if not p.exists():
        _create(p)
    mode = p.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AuditConfigError(
            f"checkpoint key {p} is readable by others (mode {oct(mode & 0o777)}): chmod 600 it"
        )
    try:
        ring = Keyring.load(p)
        iss = next(iter(ring.issuers()), CHECKPOINT_ISSUER)
        signer = CheckpointSigner(ring.signing_key(iss), issuer=iss)
    except (KeyringError, ValueError) as exc:
        raise AuditConfigError(f"checkpoint key: {exc}") from None
    _write(
        public_jwks_path(p),
        orjson.dumps({"keys": [signer.key.public_jwk()]}, option=orjson.OPT_INDENT_2),
        0o644,
    )
    return signer


def _create(path: Path) -> None:
    draft = generate_key("ES256", "pending")
    jwk = {**draft.private_jwk(), "kid": jwk_thumbprint(draft.public_jwk())}
    key = key_from_jwk(jwk, label=str(path))
    data = orjson.dumps(
        Keyring().with_key(CHECKPOINT_ISSUER, key).to_dict(private=True), option=orjson.OPT_INDENT_2
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_private_tmp(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process created it first; load theirs
    finally:
        tmp.unlink(missing_ok=True)


def _write_private_tmp(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data + b"\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint_keys(path: str | os.PathLike[str]) -> Keyring:
    """An auditor's checkpoint keys: a bare JWKS (as written beside the key) or a K3 keyring.

    A bare JWKS names no issuer; its keys are those of ``CHECKPOINT_ISSUER``,
    the issuer every generated checkpoint key signs as.
    """
    p = Path(path)
    try:
        doc: Any = orjson.loads(p.read_bytes())
    except OSError as exc:
        raise KeyringError(f"cannot read checkpoint keys {p}: {exc.strerror or exc}") from None
    except orjson.JSONDecodeError:
        raise KeyringError(f"checkpoint keys {p} are not JSON") from None
    if isinstance(doc, dict) and "keys" in doc and "issuers" not in doc:
        try:
            return Keyring({CHECKPOINT_ISSUER: keys_from_jwks(CHECKPOINT_ISSUER, doc)})
        except KeyringError as exc:
            raise KeyringError(f"checkpoint keys {p}: {exc}") from None
    return Keyring.load(p)


class FileWitness:
    """Checkpoints appended to a JSON Lines file, each line fsynced before the append returns.

    Meant for a file the log's database owner cannot rewrite: another
    host's mount, an append-only (``chattr +a``) file, a log shipper's
    input. Reading tolerates a torn last line (a crash mid-write).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.location = str(self.path)

    def add_checkpoint(self, seq: int, body: bytes) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, body + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise AuditUnavailableError(f"witness {self.path}: {exc.strerror or exc}") from None

    def checkpoints(self) -> list[tuple[int, bytes]]:
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise AuditUnavailableError(f"witness {self.path}: {exc.strerror or exc}") from None
        found = []
        for line in lines:
            with contextlib.suppress(ValueError):
                found.append((Checkpoint.parse(line).seq, line))
        return sorted(found, key=lambda item: item[0])

    def close(self) -> None:
        """Nothing stays open between appends."""


def state_key_path(state_dir: str | os.PathLike[str]) -> Path:
    """Where a gateway keeps its checkpoint key: its state dir, which the database never sees."""
    return Path(state_dir) / KEY_FILE


def sqlite_key_path(db_path: str) -> Path:
    """The guard's default for a SQLite log: beside the file, ``<db>.checkpoint-key.json``."""
    return Path(db_path).with_name(Path(db_path).name + ".checkpoint-key.json")


def remote_key_path(location: str) -> Path:
    """The guard's default for a database elsewhere: the user's XDG state dir, one key per log."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    name = hashlib.sha256(location.encode()).hexdigest()[:16]
    return base / "mcp-attest" / f"audit-checkpoint-key-{name}.json"
