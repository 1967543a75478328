"""Memory ids drawn from a pool: uuid4's shape, never repeated across threads or forks."""

from __future__ import annotations

import os
import threading
import uuid

from spiral_tasks import ids


def test_an_id_is_a_version_4_uuid_in_hex() -> None:
    for _ in range(3 * ids.POOL):
        drawn = ids.new_id()
        parsed = uuid.UUID(drawn)
        assert parsed.hex == drawn
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_threads_drawing_at_once_never_get_the_same_id() -> None:
    drawn: list[list[str]] = [[] for _ in range(8)]

    def draw(into: list[str]) -> None:
        into.extend(ids.new_id() for _ in range(5 * ids.POOL))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [i for into in drawn for i in into]
    assert len(set(every)) == len(every) == 8 * 5 * ids.POOL


def test_a_forked_child_does_not_hand_out_its_parents_pooled_ids() -> None:
    ids.new_id()  # the pool now holds ids the parent will hand out
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.close(reader)
        os.write(writer, " ".join(ids.new_id() for _ in range(ids.POOL)).encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        in_child = set(pipe.read().split())
    os.waitpid(child, 0)
    in_parent = {ids.new_id() for _ in range(ids.POOL)}
    assert len(in_child) == ids.POOL
    assert not in_child & in_parent
