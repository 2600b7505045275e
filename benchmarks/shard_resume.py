"""What deciding per shard costs a re-run: ShardSink.pending over a folder whose shards are all finished.

    python benchmarks/shard_resume.py [--images 20000] [--rows 500000] [--shard-size 100000]

A folder of `--images` small files is walked into `--rows` records (the walk repeated, as a SOURCE of that
size would list them); the re-run stats and hashes every row to tell that every shard is unchanged. Prints
the records per second of listing alone and of the re-run check, their ratio (the check's cost per row
beside what listing SOURCE costs anyway), and the peak memory the check traced (bounded by one shard's
records, never by --rows).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

from autolabel.core.records import Counts, ImageRecord, Shard
from autolabel.labelling.output import ShardSink
from autolabel.labelling.sources import folder_entries
from autolabel.table.schema import OUTPUT_SCHEMA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--shard-size", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "images"
        root.mkdir()
        for i in range(args.images):
            (root / f"{i:07d}.png").write_bytes(b"x" * (1 + i % 97))

        def records() -> Iterator[ImageRecord]:
            walks = itertools.chain.from_iterable(folder_entries(root) for _ in itertools.count())
            for row, (rel, _) in enumerate(itertools.islice(walks, args.rows)):
                yield ImageRecord(path=rel, location=str(root / rel), row=row)

        first = ShardSink(f"{tmp}/out/", OUTPUT_SCHEMA, "job", args.shard_size, False)
        for _ in first.pending(records()):
            pass  # a fresh run (and a warm file system): every shard streams through, its digest taken on the way
        started = time.perf_counter()
        listed = sum(1 for _ in records())
        listing = time.perf_counter() - started

        def rerun() -> ShardSink:
            sink = ShardSink(f"{tmp}/out/", OUTPUT_SCHEMA, "job", args.shard_size, False)
            sink.finished = {k: Shard(k, "", k * args.shard_size, min(args.shard_size, args.rows - k * args.shard_size),
                                      Counts(), digest) for k, digest in first.digests.items()}
            return sink

        sink = rerun()
        started = time.perf_counter()
        redone = sum(1 for _ in sink.pending(records()))
        check = time.perf_counter() - started
        tracemalloc.start()  # a second pass: tracing slows allocations down too much to time the first
        sum(1 for _ in rerun().pending(records()))
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(f"{listed:,} rows, shard size {args.shard_size:,}: listing {listed / listing:,.0f} rows/s; re-run check "
          f"{listed / check:,.0f} rows/s (ratio {check / listing:.1f}×); {redone} rows redone, "
          f"{len(sink.resumed)} shards kept; peak traced memory {peak / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
