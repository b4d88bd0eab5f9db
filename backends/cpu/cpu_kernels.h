// cpu_kernels.h - the CPU backend's inner tiles: C[m][n] = sum_k A_m[k] * B_n[k], over
// rows given by pointer (tokens gathered by expert without copying, weight rows where they
// lie). One table per instruction set; the engine picks one at create time.
//
// The kernel translation units are compiled with ISA flags and include no STL header, so
// no inline function compiled for AVX-512 can be picked by the linker for generic code.
#pragma once

#include <cstdint>

namespace moereg::cpu {

// Element types of A (activations) and B (weights).
enum elem_type : int { elem_f32 = 0, elem_bf16 = 1 };

inline constexpr int max_tile_m = 4;
inline constexpr int max_tile_n = 8;

// a: M row pointers, b: N row pointers, both K elements long; c: M x N row-major.
using tile_fn = void (*)(const void* const* a, const void* const* b, std::int64_t k, float* c);

struct kernel_table {
  const char* isa = nullptr;  // "avx512bf16", "avx512f", "avx2", "scalar"
  int tile_m = 1;             // preferred tile for many rows (registers allow M x N accumulators)
  int tile_n = 4;
  // tiles[a_type][b_type][M-1][N-1]
  tile_fn tiles[2][2][max_tile_m][max_tile_n] = {};
};

void fill_scalar(kernel_table& t);
void fill_avx2(kernel_table& t);      // needs AVX2 + FMA
void fill_avx512(kernel_table& t);    // needs AVX-512 F/BW/VL
void fill_avx512bf16(kernel_table& t);  // AVX-512 F/BW/VL + BF16: bf16 x bf16 tiles use vdpbf16ps

// Which of the above this CPU runs, best first.
bool cpu_has_avx512bf16();
bool cpu_has_avx512();
bool cpu_has_avx2();

}  // namespace moereg::cpu
