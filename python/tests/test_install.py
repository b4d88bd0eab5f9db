# SPDX-License-Identifier: Apache-2.0
"""`cmake --install --prefix P` puts the module under P, where it imports and finds
libmoereg and the plugins installed beside it, with nothing written outside P."""
import os
import subprocess
import sys
import tempfile
import unittest

from support import fixture

BUILD = os.environ.get("MOEREG_BUILD_DIR", "")
CMAKE = os.environ.get("CMAKE_COMMAND", "cmake")


@unittest.skipUnless(BUILD, "MOEREG_BUILD_DIR is not set (ctest sets it)")
class Install(unittest.TestCase):
    def test_installed_under_the_prefix_imports_and_runs(self):
        with tempfile.TemporaryDirectory() as prefix:
            r = subprocess.run([CMAKE, "--install", BUILD, "--prefix", prefix], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            # Every file cmake reports ("-- Installing: PATH", "-- Up-to-date: PATH") lies under P.
            # (Not install_manifest.txt: another test may be installing from the same build.)
            files = [line.split(": ", 1)[1] for line in r.stdout.splitlines()
                     if line.startswith(("-- Installing: ", "-- Up-to-date: "))]
            self.assertGreater(len(files), 10)
            outside = [p for p in files if not p.startswith(prefix + os.sep)]
            self.assertFalse(outside, outside[:5])
            site = os.path.join(prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}")
            site = [os.path.join(site, d) for d in os.listdir(site)][0]
            env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_LIBRARY_PATH")}
            env["PYTHONPATH"] = site
            probe = ("import moereg; print(moereg.__file__); "
                     f"print(moereg.open({fixture('mixtral', 'hf')!r}).family)")
            out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=prefix)
            self.assertEqual(out.returncode, 0, out.stderr)
            where, family = out.stdout.split()
            self.assertTrue(where.startswith(prefix), where)
            self.assertEqual(family, "mixtral")


if __name__ == "__main__":
    unittest.main()
