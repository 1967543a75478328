"""Optimistic commits against the lock, with many writer processes: rate and conflicts.

    python3 -m uv run --frozen python -m benchmarks.coordination [--ops N] [--rounds N]
        [--configs 2x1 8x50 ...]

Each writer is a separate process with its own engine over one private redis-server
(like a prefork child), storing with a memory id of its own (as the store task does,
with its task id) in a closed loop, one at a time, each store into the next tenant of
one sequence all writers share (as prefork children take tasks from one queue).
Configurations: 2 and 8 processes, into 1 tenant and spread over 50. Each is run
with optimistic commits on (SPIRAL_OPTIMISTIC_COMMITS, the default) and off (every
store takes the lock), the two alternating round after round, each first in turns,
Redis flushed before each.
A store that fails (a lock lost to a stalled holder on a loaded machine) is counted
and printed. Printed per configuration: stores/s of each mode (median of the rounds, spread),
on/off, p50 and p99 latency, and the share of optimistic attempts refused, by reason
("moved": another writer committed since this process's cache; "locked": another
held the lock; "needs the lock": a batch that found out while served that it must make room), and
the share of batches that tried at all (after refusals a tenant's next batches skip
the attempt, and one that would have to make room is not tried);
then scripts per store (EVALSHA calls, from the server's statistics: each a round
trip; waiting for a lock adds EXISTS polls, not counted) and CPU ms per store of the
writers (getrusage), the steadier figures on a busy machine.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import uuid
from collections import Counter
from typing import Any

import redis

from benchmarks.common import drive, engine_over, redis_server
from spiral_tasks.storage.redis import RedisStorage

CONFIGS = [(2, 1), (2, 50), (8, 1), (8, 50)]  # (processes, tenants)


def cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def writer(url: str, optimistic: bool, tenants: int, ops: int, start: Any,
           answers: Any, sequence: Any) -> None:
    storage = RedisStorage(url)
    storage.init()
    engine = engine_over(storage, max_memory_nodes=1_000_000, optimistic=optimistic)
    names = [f"t{i}" for i in range(tenants)]
    for name in names:
        # A loaded machine can stall a holder past its lock's life: retried, like a task.
        drive(lambda _, name=name: engine.store("warm-up", tenant=name), 3, 1, catch=True)
    engine.sections.optimistic_outcomes.clear()
    start.wait()  # every writer warmed up: the parent resets Redis's statistics
    start.wait()

    def next_tenant() -> str:
        with sequence.get_lock():
            sequence.value += 1
            return names[sequence.value % tenants]

    cpu = cpu_s()
    run = drive(lambda i: engine.store(f"memory {i}", tenant=next_tenant(),
                                       memory_id=uuid.uuid4().hex), ops, 1, catch=True)
    answers.put((run.ops, run.seconds, run.latencies_ms,
                 dict(engine.sections.optimistic_outcomes), run.errors,
                 (cpu_s() - cpu) * 1000 / max(1, run.ops)))
    engine.close()


def measure(url: str, optimistic: bool, processes: int, tenants: int,
            ops: int) -> dict[str, Any]:
    client = redis.Redis.from_url(url)
    client.flushall()
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes + 1)
    answers = context.Queue()
    sequence = context.Value("l", 0)
    children = [context.Process(target=writer, args=(url, optimistic, tenants, ops, start,
                                                     answers, sequence))
                for _ in range(processes)]
    for child in children:
        child.start()
    start.wait(timeout=120)
    client.config_resetstat()
    start.wait(timeout=120)
    found = [answers.get(timeout=600) for _ in children]
    stats: dict[str, dict[str, int]] = client.info("commandstats")  # type: ignore[assignment]
    client.close()
    # Commands a script runs are counted too: EVALSHA alone is the client's own.
    scripts = stats.get("cmdstat_evalsha", {}).get("calls", 0)
    for child in children:
        child.join(timeout=60)
    latencies = sorted(x for f in found for x in f[2])
    outcomes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for f in found:
        outcomes.update(f[3])
        errors.update(f[4])
    if errors:
        print(f"  ({processes} processes, {tenants} tenants, optimistic {optimistic}: "
              f"errors {dict(errors)}, retried by a task)", flush=True)
    return {"rate": sum(f[0] / f[1] for f in found),
            "p50": latencies[len(latencies) // 2],
            "p99": latencies[int(0.99 * len(latencies))],
            "outcomes": outcomes,
            "scripts": scripts / max(1, sum(f[0] for f in found)),
            "cpu": statistics.mean(f[5] for f in found)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=2000, help="stores per process")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--configs", nargs="+", default=[f"{p}x{t}" for p, t in CONFIGS],
                        help="PROCESSESxTENANTS, e.g. 2x1 8x50")
    args = parser.parse_args()
    configs = [(int(p), int(t)) for p, t in (c.split("x") for c in args.configs)]
    found: dict[tuple[int, int, bool], list[dict[str, Any]]] = {}
    with redis_server() as server:
        for round_ in range(args.rounds):
            for processes, tenants in configs:
                modes = (True, False) if round_ % 2 == 0 else (False, True)
                for optimistic in modes:
                    found.setdefault((processes, tenants, optimistic), []).append(
                        measure(server.url, optimistic, processes, tenants, args.ops))
            print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    print(f"stores/s (sum over processes), median of {args.rounds} rounds, "
          f"{args.ops} stores per process")
    print(f"{'procs':>5} {'tenants':>7} {'on':>8} {'off':>8} {'on/off':>7} {'spread on/off':>14}"
          f" {'p50 on/off ms':>14} {'p99 on/off ms':>14} {'scripts/store on/off':>20}"
          f" {'CPU ms/store on/off':>19}  refused (share of attempts)")
    for processes, tenants in configs:
        on, off = found[(processes, tenants, True)], found[(processes, tenants, False)]
        ratios = sorted(a["rate"] / b["rate"] for a, b in zip(on, off, strict=True))
        outcomes: Counter[str] = Counter()
        for run in on:
            outcomes.update(run["outcomes"])
        skipped = outcomes.pop("skipped", 0) + outcomes.pop("needs room", 0)
        attempts = sum(outcomes.values()) or 1
        refused = ", ".join(f"{k} {v / attempts:.1%}" for k, v in sorted(outcomes.items())
                            if k != "committed")
        refused += f"; {attempts / (attempts + skipped):.0%} of batches tried"
        figures = ("rate", "p50", "p99", "scripts", "cpu")
        med = {k: statistics.median(r[k] for r in on) for k in figures}
        med_off = {k: statistics.median(r[k] for r in off) for k in figures}
        print(f"{processes:>5} {tenants:>7} {med['rate']:>8,.0f} {med_off['rate']:>8,.0f}"
              f" {statistics.median(ratios):>7.2f} {ratios[0]:>6.2f}-{ratios[-1]:<6.2f}"
              f" {med['p50']:>6.2f}/{med_off['p50']:<6.2f} {med['p99']:>6.2f}/"
              f"{med_off['p99']:<6.2f} {med['scripts']:>9.2f}/{med_off['scripts']:<10.2f}"
              f" {med['cpu']:>9.3f}/{med_off['cpu']:<9.3f}  {refused or 'none'}")


if __name__ == "__main__":
    main()
