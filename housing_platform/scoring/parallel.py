"""Running chunks of a numpy computation on threads (numpy releases the GIL), each with one BLAS thread."""

from __future__ import annotations


def run_parts(run, starts: range, threads: int) -> None:
    """``run(start)`` for every start: in order on one thread, or on ``threads`` threads, each with
    single-threaded BLAS (numpy releases the GIL; BLAS threads on top would oversubscribe the cores)."""
    if threads <= 1 or len(starts) <= 1:
        for start in starts:
            run(start)
        return
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, starts))
