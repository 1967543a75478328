"""The audit signer's and actor's fast paths against the general ones they replace:
the MACs of an entry and a head are the bytes `Signer.sign` gives (a store writes
both, and a verifier recomputes them with `sign`), a sealed entry is `entry`'s, a sigil
is the HMAC of its fields joined as bytes, and `current()` names the actor
`process_actor()` names, in a forked child too."""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spiral_tasks.audit import actor as audit_actor
from spiral_tasks.audit.chain import FIELDS, Signer, entry_hash
from spiral_tasks.security.sigils import MAC_CHARS, VERSION, SigilKey

texts = st.text(min_size=0, max_size=40)
keys = st.binary(min_size=0, max_size=100)


class _Tenant(str):
    def __str__(self) -> str:  # a subclass may print otherwise: the general way
        return "other"


@settings(max_examples=200, deadline=None)
@given(keys, texts, st.integers(min_value=-(2**70), max_value=2**70), texts)
def test_a_head_is_signed_as_sign_would(key: bytes, tenant: str, seq: int,
                                        digest: str) -> None:
    signer = Signer(key)
    head = signer.head(tenant, seq, digest)
    assert head == {"seq": seq, "hash": digest,
                    "mac": signer.sign("head", tenant, seq, digest)}
    assert list(head) == ["seq", "hash", "mac"]
    assert signer.head_valid(tenant, head)


@pytest.mark.parametrize(("tenant", "seq"), [(_Tenant("t"), 3), ("t", True)])
def test_a_head_of_other_types_goes_the_general_way(tenant: Any, seq: Any) -> None:
    signer = Signer(b"key")
    assert signer.head(tenant, seq, "d")["mac"] == signer.sign("head", tenant, seq, "d")


@settings(max_examples=200, deadline=None)
@given(keys, st.integers(min_value=0, max_value=2**40), texts, texts, texts,
       st.lists(texts, max_size=3), st.none() | texts, st.none() | texts,
       st.floats(allow_nan=False, allow_infinity=False))
def test_an_entry_is_signed_as_sign_would(key: bytes, seq: int, prev: str, tenant: str,
                                          op: str, ids: list[str], task: str | None,
                                          worker: str | None, time: float) -> None:
    signer = Signer(key)
    body = {"seq": seq, "prev": prev, "tenant": tenant, "op": op, "ids": ids,
            "task": task, "worker": worker, "time": time}
    entry = signer.entry(body)
    digest = entry_hash(body)
    assert entry == {**body, "hash": digest, "mac": signer.sign("entry", digest)}
    assert list(entry) == [*body, "hash", "mac"]


def test_current_names_this_process() -> None:
    assert audit_actor.current() == audit_actor.process_actor()
    actor = audit_actor.Actor("task-1", "worker-1")
    with audit_actor.acting(actor):
        assert audit_actor.current() is actor
    assert audit_actor.current() == audit_actor.process_actor()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_names_itself() -> None:
    parent = audit_actor.current()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running the parent's cleanup
        try:
            ok = audit_actor.current() == audit_actor.process_actor() != parent
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 1) == b"1"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert audit_actor.current() == parent


@settings(max_examples=200, deadline=None)
@given(keys, st.integers(min_value=0, max_value=2**40), texts, st.lists(texts, max_size=3),
       st.none() | texts, st.floats(allow_nan=False, allow_infinity=False), st.randoms())
def test_a_sealed_body_is_the_entry_of_it(key: bytes, seq: int, tenant: str,
                                          ids: list[str], task: str | None, time: float,
                                          order: Any) -> None:
    signer = Signer(key)
    fields = list(zip(FIELDS, [seq, "p" * 64, tenant, "store", ids, task, "w:1", time],
                      strict=True))
    order.shuffle(fields)  # any order: the hash sorts the keys
    body = dict(fields)
    expected = signer.entry(body)
    sealed = signer.seal(dict(body))
    assert sealed == expected
    assert list(sealed) == list(expected)  # the stored JSON keeps this order
    assert orjson.dumps(sealed) == orjson.dumps(expected)


@settings(max_examples=300, deadline=None)
@given(keys, texts, texts, st.floats(allow_nan=False) | st.integers(-(2**60), 2**60))
def test_a_sigil_is_the_bytes_of_the_joined_fields(key: bytes, tenant: str, memory_id: str,
                                                   created: float) -> None:
    sigil_key = SigilKey(key)
    message = b"\x00".join((VERSION, tenant.encode("utf-8", "surrogatepass"),
                            memory_id.encode("utf-8", "surrogatepass"),
                            repr(float(created)).encode()))
    try:
        tenant.encode()
        memory_id.encode()
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            sigil_key.sign(tenant, memory_id, created)
        return
    expected = sigil_key.kid + hmac.new(key, message, hashlib.sha256).hexdigest()[:MAC_CHARS]
    assert sigil_key.sign(tenant, memory_id, created) == expected
