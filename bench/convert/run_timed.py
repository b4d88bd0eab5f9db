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
rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(f"{name} {dt:.3f} {rss:.0f} {rc}", flush=True)
sys.exit(rc)
