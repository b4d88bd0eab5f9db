# SPDX-License-Identifier: Apache-2.0
"""Run a command; print its wall time (s) and peak resident memory (MiB) of its process tree.
Usage: timeit.py NAME -- COMMAND...   (stdout/stderr of the command go to /dev/null)"""
import resource
import subprocess
import sys
import time

name, cmd = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
t0 = time.perf_counter()
rc = subprocess.call(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
dt = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
rss = ru.ru_maxrss / 1024
# user and system CPU seconds last: where the time goes (page copies are system time).
print(f"{name} {dt:.3f} {rss:.0f} {rc} {ru.ru_utime:.2f} {ru.ru_stime:.2f}", flush=True)
sys.exit(rc)
