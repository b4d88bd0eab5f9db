// SPDX-License-Identifier: Apache-2.0
// bench_support.h - (in-tree) what app::bench_moe measures with: synthetic weights, the memory-bandwidth
// ceilings (host read, device copy), device buffers through a backend's table, and the
// PyTorch reference script it runs beside the backend.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "moereg/abi/moereg_backend.h"
#include "moereg/safetensors/safetensors_writer.h"

namespace moereg::app {

// n bf16 values uniform in +-scale*sqrt(3) (standard deviation `scale`), never exactly zero.
void fill_bf16(std::uint16_t* out, std::size_t n, float scale, std::uint64_t seed);

// Writes the named tensors of random bf16 values with `threads` threads, 16 MiB at a time.
void write_random(safetensors_writer& w, const std::vector<std::pair<std::string, float>>& which, std::uint64_t seed,
                  int threads);

// Throws, naming `dir`, the bytes and the fix, when `bytes` more would not fit in `dir`: past
// the free space of its filesystem, or, on a tmpfs (whose files live in memory), past the
// memory the kernel says is available less 2 GiB or an eighth of `bytes`, what the bench needs
// beside the file. A filesystem that reports no figure passes.
void check_room(const std::string& dir, std::uint64_t bytes, const std::string& what);

// Device memory a backend allocated through its table; freed with it.
struct device_buffer {
  const moereg_backend_api* api = nullptr;
  moereg_backend* backend = nullptr;
  void* ptr = nullptr;
  device_buffer(const moereg_backend_api* a, moereg_backend* b, std::size_t bytes);
  ~device_buffer() { api->free(backend, ptr); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
};

// Device-to-device copy bandwidth through the backend's own copy (bytes read + written, as
// bench/cuda/bench_moe.py counts it): the ceiling for a layer that streams its weights.
double measure_device_bandwidth(const moereg_backend_api* api, moereg_backend* backend);

// The python that runs the reference: the one given, else the first candidate that imports
// torch (a GPU host's python3 on PATH, Debian's python3-torch at /usr/bin/python3).
std::string find_python(const std::string& given);

// bench/moe/torch_reference.py: the one given, else beside the binary (installed or build tree).
std::string find_reference_script(const std::string& given);

// Runs a shell command and returns its standard output; `status` as pclose gives it.
std::string run_capture(const std::string& cmd, int& status);

}  // namespace moereg::app
