"""What the peer scripts of bench/peers share: the timing loop and the JSON they leave for bench/report.py."""
import json
import os
import platform
import statistics
import time


def timeit(fn, min_time=0.25, min_reps=5, max_reps=200):
    """Median and mean seconds of fn() after one warm-up call: at least min_reps calls, more until min_time."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < min_time and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), statistics.fmean(times), len(times)


def write_results(path, key, rows, **context):
    """{"context": {date, host, load_avg, **context}, key: rows} to path (its folder made)."""
    ctx = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(), "load_avg": list(os.getloadavg())}
    ctx.update(context)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump({"context": ctx, key: rows}, f, indent=1)
