"""Figures for ``bench.sse_fanout``: process usage from /proc, and delivery latencies."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench._sse_client import Records


@dataclass(frozen=True)
class Usage:
    """A process's CPU seconds (user, system) and seconds runnable but waiting for a CPU."""

    user: float
    system: float
    waiting: float

    @classmethod
    def of(cls, pid: int) -> Usage:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        tick = os.sysconf("SC_CLK_TCK")
        waiting_ns = int(Path(f"/proc/{pid}/schedstat").read_text().split()[1])
        return cls(int(fields[11]) / tick, int(fields[12]) / tick, waiting_ns / 1e9)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.user - other.user, self.system - other.system, self.waiting - other.waiting
        )

    @property
    def cpu(self) -> float:
        return self.user + self.system


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    if not ordered:
        return "n/a"
    return (
        f"p50 {statistics.median(ordered):.1f} ms   p99 {percentile(ordered, 0.99):.1f} ms   "
        f"max {ordered[-1]:.1f} ms"
    )


@dataclass
class Latencies:
    """Milliseconds per delivery from ``start`` (event id → epoch) to the subscriber's
    socket and to the client process's read of it; from ``sent`` (when the producer's
    commit returned, or when the floor's event was due) to the socket; and per event, its
    first and last arrival from ``sent``."""

    to_socket: list[float] = field(default_factory=list)
    to_read: list[float] = field(default_factory=list)
    after_sent: list[float] = field(default_factory=list)
    first: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    unexpected: int = 0

    @classmethod
    def of(
        cls, records: list[Records], start: dict[int, float], sent: dict[int, float]
    ) -> Latencies:
        result = cls()
        for record in records:
            for event_id, arrived, read in zip(
                record.ids, record.arrived, record.read, strict=True
            ):
                began = start.get(event_id)
                if began is None:
                    result.unexpected += 1
                    continue
                result.to_socket.append((arrived - began) * 1000)
                result.to_read.append((read - began) * 1000)
                after = (arrived - sent[event_id]) * 1000
                result.after_sent.append(after)
                result.first[event_id] = min(result.first.get(event_id, after), after)
                result.last[event_id] = max(result.last.get(event_id, after), after)
        result.to_socket.sort()
        result.to_read.sort()
        return result

    @property
    def delivered(self) -> int:
        return len(self.to_socket)

    @property
    def p50(self) -> float:
        return statistics.median(self.to_socket) if self.to_socket else float("nan")

    @property
    def p99(self) -> float:
        return percentile(self.to_socket, 0.99)

    def first_to_last(self) -> list[float]:
        return [self.last[event_id] - self.first[event_id] for event_id in self.first]
