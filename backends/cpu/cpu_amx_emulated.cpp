// The matrix unit's contract (cpu_kernels.h) in portable C++, one product at a time: the
// engine's AMX path (repacking, tails, passes, epilogues) then runs and is tested on any
// CPU. Slow by design; chosen only by MOEREG_CPU_ISA=amx_emulated.
#include <cstring>

#include "cpu_kernels.h"

namespace moereg::cpu {
namespace {

float bf16_at(const void* p, std::int64_t byte_offset) {
  std::uint16_t v;
  std::memcpy(&v, static_cast<const char*>(p) + byte_offset, 2);
  std::uint32_t bits = static_cast<std::uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void emulated_begin() {}
void emulated_end() {}

void emulated_block(const bf16_rows* a, int na, const void* const* b, int nb, std::int64_t steps, float* c,
                    bool accumulate) {
  for (int ia = 0; ia < na; ++ia)
    for (int ib = 0; ib < nb; ++ib) {
      float* ct = c + 256 * (2 * ia + ib);
      if (!accumulate) std::memset(ct, 0, 256 * sizeof(float));
      for (std::int64_t s = 0; s < steps; ++s)
        for (int m = 0; m < 16; ++m)
          for (int n = 0; n < 16; ++n) {
            float sum = ct[16 * m + n];
            for (int kk = 0; kk < 16; ++kk)
              for (int half = 0; half < 2; ++half)
                sum += bf16_at(a[ia].p, m * a[ia].stride + 64 * s + 2 * (2 * kk + half)) *
                       bf16_at(b[ib], 1024 * s + 64 * kk + 4 * n + 2 * half);
            ct[16 * m + n] = sum;
          }
    }
}

}  // namespace

void fill_amx_emulated(matrix_unit& u) {
  u.name = "amx_emulated";
  u.begin = &emulated_begin;
  u.end = &emulated_end;
  u.block = &emulated_block;
}

}  // namespace moereg::cpu
