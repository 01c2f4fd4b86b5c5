"""Rough throughput of the rate limiter: hits/second on the memory backend and on Redis.

Usage: ``.venv/bin/python bench/ratelimit.py [REDIS_URL] [SECONDS]``
(default ``redis://127.0.0.1:6379/0``, 2 seconds per case). A script, not a test; it
writes only under a throwaway ``gatehouse-bench:<random>`` prefix and deletes it after.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.ratelimit import Limit, MemoryBackend, RedisBackend, combine

LIMIT = Limit("bench", count=1_000_000, window=timedelta(minutes=1))  # never refuses
IP_LIMIT = Limit("bench-ip", count=1_000_000, window=timedelta(minutes=1))


def run(name: str, backend, seconds: float, threads: int, both: bool) -> None:
    """Hit ``backend`` from ``threads`` threads for ``seconds`` and print hits/second."""
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def worker(slot: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            key = f"user{n % 1000}@example.org"  # 1000 accounts, like a busy sign-in page
            if both:
                combine(backend.hit_all([(LIMIT, key), (IP_LIMIT, f"198.51.100.{n % 200}")]))
            else:
                backend.hit(key, LIMIT)
            n += 1
        done[slot] = n

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    what = "check_all(account, ip)" if both else "hit"
    print(f"{name:7} {what:24} {threads:2} thread(s): {sum(done) / seconds:>10,.0f} hits/s")


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    for threads in (1, 8):
        for both in (False, True):
            run("memory", MemoryBackend(), seconds, threads, both)
    prefix = f"gatehouse-bench:{uuid.uuid4().hex}"
    redis_backend = RedisBackend(url, prefix=prefix)
    try:
        redis_backend.ping()
    except Exception as exc:  # noqa: BLE001 - any failure just skips the Redis half
        print(f"redis   skipped: {url} not reachable ({type(exc).__name__})")
        return
    try:
        for threads in (1, 8):
            for both in (False, True):
                run("redis", redis_backend, seconds, threads, both)
    finally:
        keys = list(redis_backend.client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            redis_backend.client.delete(*keys[i : i + 500])


if __name__ == "__main__":
    main()
