"""Run every benchmark module in ``bench/`` (a module with a ``main()``), or those named:
``python -m bench`` or ``python -m bench users_me``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Runs from a checkout too, where taskgate is not installed.
sys.path.insert(0, str(HERE.parent / "src"))


def module_names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if not m.name.startswith("_"))


def benchmark(name: str) -> Callable[[], None] | None:
    main = getattr(importlib.import_module(f"bench.{name}"), "main", None)
    return main if callable(main) else None


def run(names: list[str]) -> int:
    unknown = [name for name in names if name not in module_names()]
    if unknown:
        have = [name for name in module_names() if benchmark(name) is not None]
        print(f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(have)}")
        return 2
    for name in names or module_names():
        main = benchmark(name)
        if main is None:
            continue  # a helper module, not a benchmark
        if not names and getattr(sys.modules[f"bench.{name}"], "EXPLICIT_ONLY", False):
            continue  # long or disruptive: runs only when named
        print(f"== bench.{name}", flush=True)
        main()
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
