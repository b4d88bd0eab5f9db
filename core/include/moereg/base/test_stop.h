// SPDX-License-Identifier: Apache-2.0
// test_stop.h - named moments of a job where a test can freeze it.
//
// Points: "output-locked" (checkpoint_writer: OUT locked and found empty, nothing written),
// "job-start" (convert: output locked and resume log written, no tensor read yet),
// "shard-done" (convert: a shard committed and logged), "before-complete"
// (checkpoint_writer::finish: every file written but the one that makes the output complete).
//
// Nothing happens at a point unless a hook is installed, and the shipped binary installs
// none (it reads no environment for this). The test build of the command line,
// bin/moereg_stoppable (tests/support/stop_at_hook.cpp), installs one that stops the process
// with SIGSTOP at MOEREG_TEST_STOP_AT=<point>[:<n>]; the test waits for the stop, does what it
// needs at that exact moment (truncate a source, send SIGTERM) and continues it with SIGCONT.
#pragma once

namespace moereg {

using test_stop_hook = void (*)(const char* point);

// Installs (or, with nullptr, removes) the hook called at every point.
void set_test_stop_hook(test_stop_hook hook) noexcept;

// Calls the hook, if any, with the point's name.
void test_stop_point(const char* point);

}  // namespace moereg
