# SPDX-License-Identifier: Apache-2.0
"""Memory on a multi-GB checkpoint: mapping it costs no memory, and iter_tensors holds one
tensor at a time (plus a staging slot), not the model."""
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import unittest

import moereg  # noqa: F401  (the test needs the module built)
from support import run_moereg

# Run in a fresh interpreter, so its peak RSS is this work's alone.
PROBE = textwrap.dedent("""
    import resource, sys
    import moereg
    path = sys.argv[1]
    ck = moereg.open(path)
    total = 0
    for name in ck.names():
        total += ck.tensor(name).nbytes      # every tensor viewed, none read
    after_views = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    largest = 0
    for name, t in moereg.iter_tensors(path, "transformers_v5", threads=2):
        largest = max(largest, t.nbytes)
        del t                                # the caller keeps nothing
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(total, after_views, largest, peak)
""")


class Memory(unittest.TestCase):
    def test_iterating_a_multi_gb_checkpoint_stays_near_one_tensor(self):
        with tempfile.TemporaryDirectory() as d:
            ckpt = os.path.join(d, "synth")
            r = run_moereg("synth", ckpt, "--preset", "qwen3_30b_a3b", "--layers", "2", "--threads", "2")
            self.assertEqual(r.returncode, 0, r.stderr)
            out = subprocess.run([sys.executable, "-c", PROBE, ckpt], capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, out.stderr)
            total, after_views, largest, peak = map(int, out.stdout.split())
            self.assertGreater(total, 2_000_000_000)  # multi-GB
            # Views cost nothing but the interpreter (< 200 MB here).
            self.assertLess(after_views, 200_000_000, f"{after_views} bytes resident after viewing {total}")
            # One output tensor, a staging slot per thread and released source pages: well under
            # the model's size (which the bound would exceed if tensors were kept or copied whole).
            bound = after_views + 1.5 * largest
            self.assertLess(peak, bound, f"peak {peak} bytes for largest tensor {largest} of {total}")
            self.assertLess(peak, total / 2)


if __name__ == "__main__":
    unittest.main()
