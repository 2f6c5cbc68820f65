"""Run every benchmark: each module of this package that defines ``main()``, by name.

``python -m benchmarks`` (``make bench``); ``python -m benchmarks outbox`` runs only the
named ones.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def main(names: list[str]) -> int:
    here = Path(__file__).parent
    found = sorted(
        info.name for info in pkgutil.iter_modules([str(here)]) if not info.name.startswith("_")
    )
    unknown = sorted(set(names) - set(found))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)} (known: {', '.join(found)})")
        return 2
    failed = 0
    for name in names or found:
        module = importlib.import_module(f"{__package__}.{name}")
        run = getattr(module, "main", None)
        if run is None:
            continue
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            run()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            print(f"   {name} failed: {type(exc).__name__}: {exc}")
            failed += 1
        print(f"   ({time.perf_counter() - started:.1f} s)\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
