# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bounded concurrent runner for fleet checks: ordered results, none lost, a summary.

A thread pool suits this work: it waits on sockets, and every socket operation has a timeout,
so a dead mailbox holds one worker for at most ``timeout`` and never the others.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional

from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error

# Exchange Online allows a handful of concurrent connections per mailbox and protocol.
PER_MAILBOX_LIMIT = 3


class _KeyedLimiter:
    """At most ``limit`` concurrent holders per key (a mailbox listed twice never exceeds it)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._semaphores: Dict[str, threading.BoundedSemaphore] = {}

    def get(self, key: str) -> threading.BoundedSemaphore:
        with self._lock:
            if key not in self._semaphores:
                self._semaphores[key] = threading.BoundedSemaphore(self._limit)
            return self._semaphores[key]


def run_fleet(items: List[dict], check: Callable[[dict], dict], max_workers: int,
              key: Callable[[dict], str] = lambda item: item["mailbox"].lower()) -> List[dict]:
    """Run ``check`` on every item; results come back in input order, one per item, always."""
    limiter = _KeyedLimiter(PER_MAILBOX_LIMIT)

    def guarded(item: dict) -> dict:
        with limiter.get(key(item)):
            try:
                return check(item)
            except O365Error as err:
                return failed_result(item, err)
            except Exception as exc:  # noqa: BLE001 - one broken item must not lose the others' results
                return failed_result(item, O365Error("protocol", "internal error: %s" % type(exc).__name__))

    workers = max(1, min(max_workers, len(items)))
    if workers == 1:
        return [guarded(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="o365-fleet") as pool:
        return list(pool.map(guarded, items))


def failed_result(item: dict, err: O365Error) -> dict:
    return {"mailbox": item.get("mailbox"), "ok": False, "authenticated": False, "capabilities": [],
            "server_greeting": None, "timings": {}, "error": err.as_dict()}


def summarize(results: List[dict]) -> dict:
    """Counts, failures by category, and latency (total ms) min/median/p95/max."""
    by_category: Dict[str, int] = {}
    for result in results:
        if not result.get("ok"):
            category = (result.get("error") or {}).get("category", "protocol")
            by_category[category] = by_category.get(category, 0) + 1
    totals = sorted(r["timings"]["total"] for r in results if (r.get("timings") or {}).get("total") is not None)
    ok = sum(1 for r in results if r.get("ok"))
    return {"total": len(results), "ok": ok, "failed": len(results) - ok, "by_category": by_category,
            "latency_ms": _latency(totals)}


def _latency(values: List[float]) -> Optional[dict]:
    if not values:
        return None
    return {"min": values[0], "median": _percentile(values, 50), "p95": _percentile(values, 95), "max": values[-1]}


def _percentile(sorted_values: List[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, int(math.ceil(pct / 100.0 * len(sorted_values))))
    return sorted_values[rank - 1]
