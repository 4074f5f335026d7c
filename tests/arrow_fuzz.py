"""Mutated Arrow IPC streams through the server's decode path, in a process of their own.

``python tests/arrow_fuzz.py N SEED`` decodes N mutations of a few valid streams
(dictionary-encoded strings, LZ4 and ZSTD bodies, the file format, a polars-written
stream) with ``engine.service.wire.decode_table`` and the server's limits, maps each
outcome to the status a client would get (``engine.service.status.status_from_error``)
and prints one JSON object: the count per status, the exceptions that are no domain error,
the slowest decode and the peak RSS. An abort or a hang shows as the process dying or
not finishing, with the index of the stream it was on written to stderr first.
"""

from __future__ import annotations

import io
import json
import random
import resource
import struct
import sys
import time

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from engine.api.equity_engine.v1 import portfolio_pb2
from engine.errors import EquityError
from engine.service.status import grpc_code, status_from_error
from engine.service.wire import decode_table

MAX_ROWS = 1_000_000
MAX_BYTES = 64 << 20
INTERESTING = [0, 1, -1, 7, 8, 255, 65535, 0x7FFFFFFF, -0x80000000, 1 << 31, 1 << 40,
               0x7FFFFFFFFFFFFFFF, -0x8000000000000000]


def seeds() -> list[bytes]:
    n = 40
    table = pa.table({
        "customer_id": pa.array(range(n), pa.int64()),
        "segment": pa.array([f"s{i % 3}" for i in range(n)]).dictionary_encode(),
        "name": pa.array([f"n{i}" if i % 5 else None for i in range(n)], pa.large_string()),
        "retention": pa.array([0.5 + i / 200 for i in range(n)], pa.float64()),
        "active": pa.array([i % 2 == 0 for i in range(n)]),
    })
    out = []
    for compression in (None, "lz4", "zstd"):
        sink = io.BytesIO()
        options = ipc.IpcWriteOptions(compression=compression)
        with ipc.new_stream(sink, table.schema, options=options) as writer:
            writer.write_table(table, max_chunksize=16)
        out.append(sink.getvalue())
    sink = io.BytesIO()
    with ipc.new_file(sink, table.schema, options=ipc.IpcWriteOptions(compression="lz4")) as w:
        w.write_table(table, max_chunksize=16)
    out.append(sink.getvalue())
    sink = io.BytesIO()
    pl.from_arrow(table).write_ipc_stream(sink)  # type: ignore[union-attr]
    out.append(sink.getvalue())
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not b:
            return bytes(data[:8])
        i = rng.randrange(len(b))
        op = rng.random()
        if op < 0.35:
            b[i] = rng.randrange(256)
        elif op < 0.75 and i + 8 <= len(b):
            fmt = rng.choice(["<i", "<q"])
            value = rng.choice(INTERESTING)
            try:
                struct.pack_into(fmt, b, i, value)
            except struct.error:
                struct.pack_into("<q", b, i, value)
        elif op < 0.9:
            del b[i:i + rng.randint(1, 16)]
        else:
            j = rng.randrange(len(b))
            b[i:i] = b[j:j + rng.randint(1, 32)]
    return bytes(b)


def mutations(count: int, seed: int) -> list[bytes]:
    """The first ``count`` streams ``main`` decodes with this ``seed``."""
    rng = random.Random(seed)
    originals = seeds()
    return [mutate(originals[k % len(originals)], rng) for k in range(count)]


def main(count: int, seed: int) -> None:
    rng = random.Random(seed)
    originals = seeds()
    statuses: dict[str, int] = {}
    other: list[str] = []
    slowest = 0.0
    for k in range(count):
        blob = mutate(originals[k % len(originals)], rng)
        print(k, file=sys.stderr, flush=True) if k % 500 == 0 else None
        msg = portfolio_pb2.Table(arrow_ipc=blob)
        started = time.perf_counter()
        try:
            decode_table(msg, "customers", max_rows=MAX_ROWS, max_bytes=MAX_BYTES)
            name = "OK"
        except EquityError as exc:
            name = grpc_code(status_from_error(exc).code).name
        except BaseException as exc:  # what must not happen: no status for the caller
            name = "NO_STATUS"
            other.append(f"{k}: {type(exc).__name__}: {str(exc)[:200]}")
        slowest = max(slowest, time.perf_counter() - started)
        statuses[name] = statuses.get(name, 0) + 1
    print(json.dumps({
        "count": count, "statuses": statuses, "other": other[:20],
        "slowest_seconds": round(slowest, 4),
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
