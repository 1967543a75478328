"""The key layout: tenants' hash tags, and the directories that list their keys."""

from __future__ import annotations

import pytest

from spiral_tasks.keys import TenantKeys, directory_of, hash_tag


@pytest.mark.parametrize(("key", "tag"), [
    ("t:{acme}:mem:1", "acme"),
    ("{a}{b}", "a"),
    ("no tag", None),
    ("empty {} braces", None),
    ("open { only", None),
    ("x}{y}", "y"),
])
def test_hash_tag_follows_redis_cluster_rules(key: str, tag: str | None) -> None:
    assert hash_tag(key) == tag


def test_directory_lives_in_the_tag_slot() -> None:
    assert directory_of("t:{acme}:mem:1") == "__dir__:{acme}"
    assert directory_of("tenants:acme") == "__dir__"


def test_every_key_of_a_tenant_shares_its_hash_tag() -> None:
    keys = TenantKeys("acme")
    names = [keys.memory("m"), keys.spiral("s"), keys.sigil("x"), keys.spiral_count("s"),
             keys.memory_count, keys.gc_queue, keys.tombstone("m"), keys.tombstone_queue,
             keys.store_ticks, keys.lock, keys.generation]
    assert {hash_tag(name) for name in names} == {"acme"}
