#!/usr/bin/env python3
"""Cost of checking a ``.rec``/``.idx`` pair before training (``lcnn_gluon.recordio.validate``)
at ImageNet's size: 1,281,167 records.

Two synthetic files with real record headers at every indexed offset:

* ``dense``: 64-byte images back to back (a 150 MB file, in the page cache);
* ``imagenet-layout``: records as far apart as ImageNet's (about 110 KB each, a 140 GB
  file), written sparse (only the headers are on disk), so the check touches one page
  per record as it would on the real file; disk latency is not included (warm cache).

    python benchmarks/bench_validate.py [--records 1281167] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import tempfile
import time


sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lcnn_gluon import recordio  # noqa: E402

IMAGENET_MEAN_RECORD = 110_000  # bytes: ImageNet's train.rec (about 140 GB) over its images


def write_pair(prefix: str, n: int, spacing: int) -> None:
    """``n`` records whose payload is an IRHeader (label i % 1000) plus zeros, ``spacing``
    bytes apart (the gaps left as holes of a sparse file)."""
    payload_len = max(24 + 40, spacing - 8) if spacing <= 256 else 24 + 40
    with open(prefix + ".rec", "wb") as rec, open(prefix + ".idx", "w") as idx:
        for i in range(n):
            offset = i * spacing
            body = recordio.pack_header(float(i % 1000), i, b"\0" * (payload_len - 24))
            if spacing > 256:  # the record's declared length spans the whole gap
                length = spacing - 8
                rec.seek(offset)
                rec.write(struct.pack("<II", recordio.MAGIC, length) + body)
            else:
                rec.write(recordio.encode_record(body))
            idx.write(f"{i}\t{offset}\n")
        if spacing > 256:
            rec.truncate(n * spacing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_281_167)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; {args.records:,} records; median of {args.repeat}")
    with tempfile.TemporaryDirectory() as folder:
        for name, spacing in (("dense", 72), ("imagenet-layout", IMAGENET_MEAN_RECORD)):
            prefix = os.path.join(folder, name)
            write_pair(prefix, args.records, spacing)
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                found = recordio.validate(prefix + ".rec", prefix + ".idx", num_classes=1000)
                times.append(time.perf_counter() - start)
            assert found.records == args.records
            size = os.path.getsize(prefix + ".rec")
            print(f"| {name} | {size / 1e9:.1f} GB | {statistics.median(times):.2f} s |")
            os.remove(prefix + ".rec")


if __name__ == "__main__":
    main()
