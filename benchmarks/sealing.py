"""The cost of encryption at rest on the store path: stores with and without a key, in
one run, in alternating pairs.

    python3 -m uv run --frozen python -m benchmarks.sealing [--pairs N] [--ops N]

This machine is shared and its speed drifts by the minute, so both sides are measured
in the same run as many short trials in pairs, off and on back to back (in turns, on
first or off first), each on a fresh store: `--ops` stores into one tenant (limits
raised so nothing is evicted) from 1 and 8 threads sharing one engine, with contents
of 100 bytes and of 16 KiB (AES-GCM's cost grows with the bytes sealed; the rest of a
store does not). Per backend, size and callers it prints the median stores/s of each
side, the median and quartiles of the pairs' ratios (on / off: drift between pairs
cancels out), and the CPU time this process spent per store (its threads' user and
system time, what sealing adds; Redis's own time is not in it). Then what the codec
alone costs per memory record, encoded and decoded, plain and sealed.
"""

from __future__ import annotations

import statistics
import sys
import time

from benchmarks.common import (
    backend_arguments,
    drive,
    engine_over,
    open_backend,
    redis_server,
)
from spiral_tasks.config import EncryptionSettings
from spiral_tasks.security.atrest import codec_for
from spiral_tasks.storage.codec import PLAIN, Codec
from spiral_tasks.testing.encryption import new_key, sealing

CALLERS = (1, 8)
SIZES = (100, 16 * 1024)
DEPTHS = ["surface", "shallow", "deep"]
SIDES = ("off", "on")


def measure(backend: str, url: str, encryption: EncryptionSettings, size: int,
            callers: int, ops: int) -> tuple[float, float]:
    """(stores/s, CPU µs of this process per store) of `ops` stores of `size`-byte
    contents, on a fresh store."""
    filler = "x" * size
    with open_backend(backend, url, encryption) as storage:
        engine = engine_over(storage, max_memory_nodes=1_000_000)
        engine.store("warm-up", tenant="bench")
        cpu = time.process_time()
        run = drive(lambda i: engine.store(f"{i} {filler}", depth=DEPTHS[i % 3],
                                           tenant="bench"), ops, callers)
        cpu_us = (time.process_time() - cpu) / ops * 1e6
        assert engine.stats("bench").consistent
    return run.rate, cpu_us


def codec_us(codec: Codec, size: int, rounds: int = 5000) -> float:
    """Microseconds to encode then decode one memory record with `size` bytes of
    content (the best of five batches)."""
    key = "t:{bench}:mem:m1"
    record = {"id": "m1", "tenant": "bench", "content": "x" * size, "type": "general",
              "depth": "shallow", "associations": [], "access_count": 0}
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            codec.decode(key, codec.encode(key, record))
        best = min(best, (time.perf_counter() - started) / rounds * 1e6)
    return best


def quartiles(values: list[float]) -> str:
    low, _, high = statistics.quantiles(values, n=4)
    return f"{low:.2f}-{high:.2f}"


def main() -> None:
    parser = backend_arguments(__doc__)
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--ops", type=int, default=500)
    args = parser.parse_args()
    settings = {"off": EncryptionSettings(), "on": sealing(new_key())}
    combos = [(b, s, c) for b in args.backends for s in SIZES for c in CALLERS]
    found: dict[tuple[str, int, int], dict[str, list[tuple[float, float]]]] = {
        combo: {side: [] for side in SIDES} for combo in combos}
    with redis_server() as server:
        for pair in range(args.pairs):
            order = SIDES if pair % 2 == 0 else SIDES[::-1]
            for backend, size, callers in combos:
                for side in order:
                    found[(backend, size, callers)][side].append(
                        measure(backend, server.url, settings[side], size, callers,
                                args.ops))
            print(f"pair {pair + 1}/{args.pairs} done", file=sys.stderr)
    print(f"{args.pairs} pairs of trials of {args.ops} stores; medians; the ratio's "
          "quartiles in brackets")
    print(f"{'backend':<8}{'content':>9}{'callers':>8}{'off/s':>9}{'on/s':>9}"
          f"{'on/off':>8}{'':>12}{'cpu µs off':>11}{'on':>6}{'on/off':>8}")
    for combo in combos:
        off, on = found[combo]["off"], found[combo]["on"]
        rates = [b[0] / a[0] for a, b in zip(off, on, strict=True)]
        cpus = [b[1] / a[1] for a, b in zip(off, on, strict=True)]
        backend, size, callers = combo
        print(f"{backend:<8}{size:>9,}{callers:>8}"
              f"{statistics.median(r for r, _ in off):>9,.0f}"
              f"{statistics.median(r for r, _ in on):>9,.0f}"
              f"{statistics.median(rates):>8.2f}{'[' + quartiles(rates) + ']':>12}"
              f"{statistics.median(c for _, c in off):>11.0f}"
              f"{statistics.median(c for _, c in on):>6.0f}{statistics.median(cpus):>8.2f}")
    sealed = codec_for(settings["on"])
    print("codec alone, one memory record encoded and decoded (µs, best of 5)")
    for size in SIZES:
        plain_us, sealed_us = codec_us(PLAIN, size), codec_us(sealed, size)
        print(f"content {size:>6,} bytes: plain {plain_us:7.1f}  sealed {sealed_us:7.1f}  "
              f"(+{sealed_us - plain_us:.1f})")


if __name__ == "__main__":
    main()
