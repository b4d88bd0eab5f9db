// SPDX-License-Identifier: Apache-2.0
// test_stop.h - TEST ONLY: a named point where a test can freeze a running job.
//
// With MOEREG_TEST_STOP_AT=<point>[:<n>] in the environment, the process stops itself with
// SIGSTOP the n-th time (default: the first) it reaches <point>. The test waits for the
// stop (waitpid WUNTRACED), does what it needs at that exact moment - truncate a source,
// send SIGTERM - and continues the process with SIGCONT. Unset, a call costs one getenv.
// Never set it outside tests. Points: "output-locked" (checkpoint_writer: OUT locked and
// found empty, nothing written), "job-start" (convert: output locked and resume log written, no tensor read yet),
// "shard-done" (convert: a shard committed and logged), "before-complete"
// (checkpoint_writer::finish: every file written but the one that makes the output complete).
#pragma once

namespace moereg {

void test_stop_point(const char* point);

}  // namespace moereg
