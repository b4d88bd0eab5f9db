// SPDX-License-Identifier: Apache-2.0
// cpu_avx512_exp.h - e^x on 16 floats, for the AVX-512 epilogues of the AMX translation units
// (cpu_kernels_amx.cpp, cpu_int_dot_amx.cpp), which alone include it: only code compiled with
// AVX-512 flags may call it (no STL, see cpu_kernels.h).
#pragma once

#include <immintrin.h>

namespace moereg::cpu {
namespace {

// e^x to ~2e-7 relative: x = n ln2 + r, |r| <= ln2 / 2, a degree-6 polynomial in r, times 2^n.
__m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

}  // namespace
}  // namespace moereg::cpu
