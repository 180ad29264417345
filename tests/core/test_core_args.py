"""PROFILE section 5: argument commitments (A1-A4)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from _core_helpers import (
    ARGS,
    ARGS_DIGEST,
    HS,
    SERVER,
    TOOL,
    dumps,
    entry,
    jcs_text,
    reason_of,
    sign_wire,
    unsigned_wire,
)

from mcp_attest import (
    FileResolver,
    InMemoryReplayStore,
    Issuer,
    Key,
    Keyring,
    PlannedCall,
    Reason,
    ResolverError,
    Verifier,
    VerifierPolicy,
    generate_key,
    resolve_data_uri,
)
from mcp_attest.envelope import b64url_encode, signing_input
from mcp_attest.resolvers import MAX_REF_BYTES


def _digest(content: bytes) -> str:
    return b64url_encode(hashlib.sha256(content).digest())


def _data_uri(content: bytes) -> str:
    return "data:application/json;base64," + base64.b64encode(content).decode()


def _signed(keys: dict[str, Key], **entry_kw: Any) -> bytes:
    return dumps(sign_wire(unsigned_wire(HS, calls=[entry(**entry_kw)]), keys[HS]))


class SpyResolver:
    def __init__(self, inner: Any = resolve_data_uri) -> None:
        self.inner, self.calls = inner, []

    def __call__(self, uri: str) -> bytes:
        self.calls.append(uri)
        return bytes(self.inner(uri))


# -- A1 -------------------------------------------------------------------------


def test_a1_attestation_id_is_sha256_hex_of_the_signing_input(
    verifier: Verifier, keys: dict[str, Key]
) -> None:
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    verdict = verifier.verify(dumps(wire), tool=TOOL, arguments=ARGS)
    assert verdict.accepted
    assert verdict.attestation_id == hashlib.sha256(signing_input(wire)).hexdigest()
    assert verdict.to_dict()["attestationId"] == verdict.attestation_id


def test_a1_attestation_id_reported_from_v3_on(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    expected = hashlib.sha256(signing_input(wire)).hexdigest()
    verdict = verifier.verify(dumps(wire), tool="other", arguments=ARGS)
    assert reason_of(verdict) == (Reason.TOOL_MISMATCH, "tool.not_in_plan")
    assert verdict.attestation_id == expected


def test_a1_attestation_id_independent_of_signature_and_layout(
    keys: dict[str, Key], make_verifier: Any
) -> None:
    wire = sign_wire(unsigned_wire(HS), keys[HS])
    a = make_verifier().verify(dumps(wire), tool=TOOL, arguments=ARGS)
    b = make_verifier().verify(json.dumps(wire, indent=4).encode(), tool=TOOL, arguments=ARGS)
    assert a.attestation_id == b.attestation_id
    assert a.attestation_id is not None and len(a.attestation_id) == 64
    assert a.attestation_id == a.attestation_id.lower()


# -- A2 -------------------------------------------------------------------------


def test_a2_digest_shortcut_binds_without_fetching(make_verifier: Any, keys: dict[str, Key]) -> None:
    spy = SpyResolver()
    verifier = make_verifier(resolvers={"data": spy})
    content = jcs_text(ARGS).encode()
    verdict = verifier.verify(
        _signed(keys, ref={"uri": _data_uri(content), "digest": _digest(content)}), tool=TOOL, arguments=ARGS
    )
    assert verdict.accepted and verdict.args_binding == "ref-digest"
    assert spy.calls == []


def test_a2_data_uri_with_non_jcs_content_is_ref_resolved(make_verifier: Any, keys: dict[str, Key]) -> None:
    content = b'{\n  "path": "/srv/report.txt",\n  "lines": 1.0e1\n}'
    assert content != jcs_text(ARGS).encode()
    spy = SpyResolver()
    verifier = make_verifier(resolvers={"data": spy})
    verdict = verifier.verify(
        _signed(keys, ref={"uri": _data_uri(content), "digest": _digest(content)}), tool=TOOL, arguments=ARGS
    )
    assert verdict.accepted, verdict.detail
    assert verdict.args_binding == "ref-resolved"
    assert len(spy.calls) == 1


def test_a2_data_uri_percent_encoded_form(verifier: Verifier, keys: dict[str, Key]) -> None:
    content = b'{"lines":10, "path":"/srv/report.txt"}'
    uri = "data:application/json," + content.decode().replace(" ", "%20").replace('"', "%22")
    verdict = verifier.verify(
        _signed(keys, ref={"uri": uri, "digest": _digest(content)}), tool=TOOL, arguments=ARGS
    )
    assert verdict.accepted and verdict.args_binding == "ref-resolved"


@pytest.mark.parametrize(
    ("content", "digest_of", "detail"),
    [
        (b'{"path":"/etc/shadow","lines":10}', "content", "ref.content_mismatch"),
        (b'{"path":"/srv/report.txt","lines":10}', "other", "ref.digest_mismatch"),
        (b"not json at all", "content", "ref.not_json"),
        (b'{"path":"/srv/report.txt","lines":10,"lines":10}', "content", "ref.not_json"),
        (b'{"path":"/srv/report.txt","lines":1e400}', "content", "ref.not_json"),
    ],
)
def test_a2_resolved_content_failures(
    verifier: Verifier, keys: dict[str, Key], content: bytes, digest_of: str, detail: str
) -> None:
    digest = _digest(content if digest_of == "content" else b"something else")
    verdict = verifier.verify(
        _signed(keys, ref={"uri": _data_uri(content), "digest": digest}), tool=TOOL, arguments=ARGS
    )
    assert reason_of(verdict) == (Reason.ARGS_COMMITMENT_MISMATCH, detail)


def test_a2_unresolvable_uri_without_resolver(make_verifier: Any, keys: dict[str, Key]) -> None:
    envelope = _signed(keys, ref={"uri": "https://blobs.example/args", "digest": _digest(b"x")})
    verdict = make_verifier().verify(envelope, tool=TOOL, arguments=ARGS)
    assert reason_of(verdict) == (Reason.ARGS_COMMITMENT_MISMATCH, "ref.digest_mismatch")
    verdict = make_verifier(resolve_refs=True).verify(envelope, tool=TOOL, arguments=ARGS)
    assert reason_of(verdict) == (Reason.ARGS_COMMITMENT_MISMATCH, "ref.unresolvable")


def test_a2_strict_resolve_refs_always_fetches(make_verifier: Any, keys: dict[str, Key]) -> None:
    content = jcs_text(ARGS).encode()
    spy = SpyResolver()
    verifier = make_verifier(resolve_refs=True, resolvers={"data": spy})
    verdict = verifier.verify(
        _signed(keys, ref={"uri": _data_uri(content), "digest": _digest(content)}), tool=TOOL, arguments=ARGS
    )
    assert verdict.accepted and verdict.args_binding == "ref-resolved"
    assert len(spy.calls) == 1
    # a matching digest with a URI nobody can fetch is refused in strict mode
    verdict = verifier.verify(
        _signed(keys, ref={"uri": "urn:blob:1", "digest": ARGS_DIGEST}), tool=TOOL, arguments=ARGS
    )
    assert reason_of(verdict) == (Reason.ARGS_COMMITMENT_MISMATCH, "ref.unresolvable")


def test_a2_resolver_failures_are_mismatch(make_verifier: Any, keys: dict[str, Key]) -> None:
    def boom(uri: str) -> bytes:
        raise OSError("network down")

    def huge(uri: str) -> bytes:
        return b" " * (MAX_REF_BYTES + 1)

    for resolver in (boom, huge):
        verifier = make_verifier(resolvers={"blob": resolver})
        verdict = verifier.verify(
            _signed(keys, ref={"uri": "blob:1", "digest": _digest(b"x")}), tool=TOOL, arguments=ARGS
        )
        assert reason_of(verdict) == (Reason.ARGS_COMMITMENT_MISMATCH, "ref.unresolvable")


def test_a2_bad_data_uris() -> None:
    for uri in ("data:application/json;base64,@@@", "data:nocomma", "http://x,y"):
        with pytest.raises(ResolverError):
            resolve_data_uri(uri)
    too_big = "data:," + "a" * (MAX_REF_BYTES + 1)
    with pytest.raises(ResolverError, match="too large"):
        resolve_data_uri(too_big)


@pytest.fixture
def file_root(tmp_path: Path) -> Path:
    root = tmp_path / "allowed"
    root.mkdir()
    (root / "args.json").write_bytes(b'{ "lines": 10, "path": "/srv/report.txt" }')
    (tmp_path / "secret.json").write_bytes(
        b'{"lines": 10, "path": "/srv/report.txt"}'
    )  # not JCS: no shortcut
    os.symlink(tmp_path / "secret.json", root / "escape.json")
    return root


def test_a2_file_resolver_inside_root(make_verifier: Any, keys: dict[str, Key], file_root: Path) -> None:
    content = (file_root / "args.json").read_bytes()
    verifier = make_verifier(resolvers={"file": FileResolver(file_root)})
    uri = (file_root / "args.json").as_uri()
    verdict = verifier.verify(
        _signed(keys, ref={"uri": uri, "digest": _digest(content)}), tool=TOOL, arguments=ARGS
    )
    assert verdict.accepted and verdict.args_binding == "ref-resolved"


@pytest.mark.parametrize(
    "make_uri",
    [
        lambda root: (root.parent / "secret.json").as_uri(),
        lambda root: root.as_uri() + "/../secret.json",
        lambda root: root.as_uri() + "/%2e%2e/secret.json",
        lambda root: (root / "escape.json").as_uri(),
        lambda root: "file://evil.example" + str(root / "args.json"),
        lambda root: (root / "missing.json").as_uri(),
    ],
    ids=["outside", "dotdot", "encoded-dotdot", "symlink-escape", "remote-host", "missing"],
)
def test_a2_file_resolver_confinement(
    make_verifier: Any, keys: dict[str, Key], file_root: Path, make_uri: Any
) -> None:
    secret = (file_root.parent / "secret.json").read_bytes()
    uri = make_uri(file_root)
    resolver = FileResolver(file_root)
    with pytest.raises((ResolverError, OSError)):
        resolver(uri)
    verifier = make_verifier(resolvers={"file": resolver})
    verdict = verifier.verify(
        _signed(keys, ref={"uri": uri, "digest": _digest(secret)}), tool=TOOL, arguments=ARGS
    )
    assert reason_of(verdict) == (Reason.ARGS_COMMITMENT_MISMATCH, "ref.unresolvable")


def test_a2_issuer_ref_commit_uses_jcs_data_uri(hs_issuer: Any, make_verifier: Any) -> None:
    env = hs_issuer.sign(tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="x", commit="ref")
    ref = env.tool_calls[0].args_ref
    assert env.tool_calls[0].args_projection is None
    assert resolve_data_uri(ref.uri) == jcs_text(ARGS).encode()
    assert ref.digest == ARGS_DIGEST
    verdict = make_verifier(resolve_refs=True).verify(env.to_json(), tool=TOOL, arguments=ARGS)
    assert verdict.accepted and verdict.args_binding == "ref-resolved"


# -- A3 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "projection",
    [
        jcs_text(ARGS),
        '{ "path" : "/srv/report.txt" , "lines" : 10.0 }',
        '{"lines":1e1,"path":"\\/srv/report.txt"}',
    ],
)
def test_a3_identity_projection(verifier: Verifier, keys: dict[str, Key], projection: str) -> None:
    verdict = verifier.verify(_signed(keys, projection=projection), tool=TOOL, arguments=ARGS)
    assert verdict.accepted and verdict.args_binding == "identity"


def test_a3_redacted_projection_is_refused_by_default(verifier: Verifier, keys: dict[str, Key]) -> None:
    verdict = verifier.verify(
        _signed(keys, projection='{"path":"<redacted>"}'), tool=TOOL, arguments={"path": "/etc/shadow"}
    )
    assert reason_of(verdict) == (Reason.ARGS_COMMITMENT_MISMATCH, "args.not_bound")
    assert VerifierPolicy().args_binding == "strict"


def test_a3_spec_policy_accepts_redacted_but_not_bound(make_verifier: Any, keys: dict[str, Key]) -> None:
    verdict = make_verifier(args_binding="spec").verify(
        _signed(keys, projection='{"path":"<redacted>"}'), tool=TOOL, arguments={"path": "/etc/shadow"}
    )
    assert verdict.accepted and verdict.args_binding == "redacted"
    assert verdict.to_dict()["argsBinding"] == "redacted"


@pytest.mark.parametrize(
    "projection",
    [
        "not json",
        "{",
        '{"a":1,"a":2}',
        '{"n":NaN}',
        '{"n":1e400}',
        '{"n":-0}',
        '"\\ud800"',
        '{"n":9007199254740993}',
    ],
)
def test_a3_projection_not_json(verifier: Verifier, keys: dict[str, Key], projection: str) -> None:
    verdict = verifier.verify(_signed(keys, projection=projection), tool=TOOL, arguments=ARGS)
    assert reason_of(verdict) == (Reason.ARGS_COMMITMENT_MISMATCH, "projection.not_json")


def test_a3_strict_args_binding(make_verifier: Any, keys: dict[str, Key]) -> None:
    strict = make_verifier(args_binding="strict")
    verdict = strict.verify(_signed(keys, projection='{"path":"<redacted>"}'), tool=TOOL, arguments=ARGS)
    assert reason_of(verdict) == (Reason.ARGS_COMMITMENT_MISMATCH, "args.not_bound")
    assert strict.verify(_signed(keys), tool=TOOL, arguments=ARGS).args_binding == "identity"
    ref = {"uri": "urn:x", "digest": ARGS_DIGEST}
    assert strict.verify(_signed(keys, ref=ref), tool=TOOL, arguments=ARGS).args_binding == "ref-digest"


# -- A4 -------------------------------------------------------------------------


def test_a4_both_present_ref_decides_binding(make_verifier: Any, keys: dict[str, Key]) -> None:
    ref = {"uri": "urn:x", "digest": ARGS_DIGEST}
    for policy in ("spec", "strict"):
        verifier = make_verifier(args_binding=policy)
        verdict = verifier.verify(
            _signed(keys, ref=ref, projection='{"path":"<redacted>"}'), tool=TOOL, arguments=ARGS
        )
        assert verdict.accepted and verdict.args_binding == "ref-digest"


def test_a4_both_present_ref_mismatch_is_not_saved_by_identity_projection(
    verifier: Verifier, keys: dict[str, Key]
) -> None:
    ref = {"uri": "urn:x", "digest": _digest(b"other")}
    verdict = verifier.verify(_signed(keys, ref=ref, projection=jcs_text(ARGS)), tool=TOOL, arguments=ARGS)
    assert reason_of(verdict) == (Reason.ARGS_COMMITMENT_MISMATCH, "ref.digest_mismatch")


def test_a4_both_present_projection_must_still_be_json(verifier: Verifier, keys: dict[str, Key]) -> None:
    ref = {"uri": "urn:x", "digest": ARGS_DIGEST}
    verdict = verifier.verify(_signed(keys, ref=ref, projection="{not json"), tool=TOOL, arguments=ARGS)
    assert reason_of(verdict) == (Reason.ARGS_COMMITMENT_MISMATCH, "projection.not_json")


def test_a4_issuer_both_commit(hs_issuer: Any, verifier: Verifier) -> None:
    env = hs_issuer.sign(tool=TOOL, arguments=ARGS, server_fingerprint=SERVER, intent="x", commit="both")
    assert env.tool_calls[0].args_projection == jcs_text(ARGS)
    assert env.tool_calls[0].args_ref is not None
    verdict = verifier.verify(env.to_json(), tool=TOOL, arguments=ARGS)
    assert verdict.accepted and verdict.args_binding == "ref-digest"


def test_a4_neither_present_is_malformed(verifier: Verifier, keys: dict[str, Key]) -> None:
    wire = unsigned_wire(HS, calls=[{"name": TOOL, "serverFingerprint": SERVER}])
    verdict = verifier.verify(dumps(sign_wire(wire, keys[HS])), tool=TOOL, arguments=ARGS)
    assert reason_of(verdict) == (Reason.SIGNATURE_INVALID, "malformed.no_commitment")


def test_a4_projection_class_is_recorded_when_ref_decides() -> None:
    ring = Keyring().with_key("agent://a4", generate_key("HS256", "k"))
    issuer = Issuer(ring, iss="agent://a4", sub="s")
    fp = "sha256:" + "a4" * 32
    both = issuer.sign_plan([PlannedCall("t", {"x": 1}, fp, "both")], intent="i")
    verdict = Verifier(ring, fp, replay_store=InMemoryReplayStore()).verify(
        both.to_json(), tool="t", arguments={"x": 1}
    )
    assert verdict.args_binding is not None and verdict.args_binding.value == "ref-digest"
    assert verdict.projection_binding is not None and verdict.projection_binding.value == "identity"
    only_ref = issuer.sign_plan([PlannedCall("t", {"x": 1}, fp, "ref")], intent="i")
    verdict = Verifier(ring, fp).verify(only_ref.to_json(), tool="t", arguments={"x": 1})
    assert verdict.accepted and verdict.projection_binding is None
