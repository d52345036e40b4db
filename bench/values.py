"""What the storable-value check costs: ``storable_json`` against the plain pydantic dump it wraps.

    .venv/bin/python bench/values.py

Each shape is dumped ``--repeat`` times both ways (best of ``--rounds``); prints a table and writes
``bench/results/values.json``. The check walks the value once in Python, so its cost grows with
the number of containers and leaves, not with the length of strings (a string is one
``isascii`` or one regex scan, in C).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from aetheris._values import storable_json

RESULTS = Path(__file__).parent / "results" / "values.json"
ANY: TypeAdapter[Any] = TypeAdapter(Any)


class Line(BaseModel):
    sku: str
    price: float
    quantity: int


class Order(BaseModel):
    order_id: str
    lines: list[Line]


def shapes() -> dict[str, tuple[Any, TypeAdapter[Any]]]:
    order = Order(order_id="o-1", lines=[Line(sku=f"sku-{i}", price=9.99, quantity=i) for i in range(20)])
    return {
        "small dict (10 keys)": ({f"k{i}": i for i in range(10)}, ANY),
        "pydantic model (20 lines)": (order, TypeAdapter(Order)),
        "1 MB ASCII string": ("x" * 1_000_000, ANY),
        "1 MB non-ASCII string": ("é" * 500_000, ANY),
        "10,000 floats": ([i / 7 for i in range(10_000)], ANY),
        "1,000 records of 5 fields": (
            [{"id": i, "name": f"n{i}", "ok": True, "score": 0.5, "tags": ["a", "b"]} for i in range(1000)],
            ANY,
        ),
    }


def best(fn: Any, repeat: int, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeat):
            fn()
        times.append((time.perf_counter() - started) / repeat)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for name, (value, via) in shapes().items():
        plain = best(lambda v=value, a=via: a.dump_json(v), args.repeat, args.rounds)
        checked = best(lambda v=value, a=via: storable_json(v, "value", via=a), args.repeat, args.rounds)
        rows.append(
            {
                "shape": name,
                "bytes": len(via.dump_json(value)),
                "dump_us": round(plain * 1e6, 1),
                "storable_json_us": round(checked * 1e6, 1),
                "overhead_us": round((checked - plain) * 1e6, 1),
            }
        )
    print(f"{'shape':<28} {'bytes':>10} {'dump µs':>10} {'checked µs':>11} {'overhead µs':>12}")
    for row in rows:
        print(
            f"{row['shape']:<28} {row['bytes']:>10} {row['dump_us']:>10} "
            f"{row['storable_json_us']:>11} {row['overhead_us']:>12}"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    document = {
        "python": platform.python_version(),
        "repeat": args.repeat,
        "rounds": args.rounds,
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
