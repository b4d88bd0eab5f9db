// SPDX-License-Identifier: Apache-2.0
// cuda_moe_plan.cu - how a layer plans a pass (see cuda_moe.h): the kernel tile shape for the
// rows per expert, whether the pass goes to cuBLAS (and how), the FP8 tensor-core engines made
// on first use, and which F8 passes run the exact-product kernels.
#include <algorithm>
#include <string>

#include "cuda_moe.h"

namespace moereg::cuda {

bool moe_layer::pick_cublas(long long rows, long long groups, cublas_mode* mode) const {
  // How the cuBLAS GEMMs are issued is decided once the expert sizes are known (run_routed).
  *mode = cublas_mode::automatic;
  {
    const std::string& s = tuning_.tiles;
    if (s == "cublas" || s == "cublas_loop" || s == "cublas_batched" || s == "cublas_auto") {
      *mode = s == "cublas" ? cublas_mode::grouped
              : s == "cublas_loop" ? cublas_mode::loop
              : s == "cublas_batched" ? cublas_mode::batched
                                      : cublas_mode::automatic;
      return true;
    }
    if (s == "m16" || s == "m64" || s == "m128" || s == "wgmma") return false;
  }
  // cublas=off keeps every size on the mma.sync kernels (and libcublas unloaded).
  if (!tuning_.cublas) return false;
  if (f8_) {
    if (tuning_.f8_activations == "bf16" || !fp8_refused_.empty() || !f8_tensor_cores()) return false;
    return tuning_.f8_activations == "e4m3" || (groups > 0 && rows >= cublas_min_rows * groups);
  }
  if (groups <= 0 || rows < bf16_cublas_min_rows() * groups) return false;
  return cublas_experts::available();
}

fp8_experts& moe_layer::fp8_blas() {
  if (!fp8_blas_)
    fp8_blas_ = std::make_unique<fp8_experts>(stream_, w13_scale_, w2_scale_, static_cast<int>(E_), static_cast<int>(H_),
                                              static_cast<int>(I_));
  return *fp8_blas_;
}

fp8_grouped_experts& moe_layer::fp8_grouped() {
  if (!fp8_grouped_) {
    fp8_grouped_ = std::make_unique<fp8_grouped_experts>(w13_f8_, w2_f8_, w13_scale_, w2_scale_, static_cast<int>(E_),
                                                         static_cast<int>(H_), static_cast<int>(I_), tuning_.f8_gather,
                                                         tuning_.f8_tile == "128x256", tuning_.f8_silu == "fused");
    if (shared_in_grouped()) fp8_grouped_->add_shared(sw13_f8_, sw2_f8_, sw13_scale_, sw2_scale_);
  }
  return *fp8_grouped_;
}

bool moe_layer::f8_tensor_cores(std::string* why) const {
  if (tuning_.f8_gemm == "wgmma") return fp8_grouped_experts::fits(E_, H_, I_, scale_b0_, scale_b1_, why);
  return fp8_experts::fits(H_, I_, scale_b0_, scale_b1_, why) && fp8_experts::available(why);
}

bool moe_layer::bf16_wgmma_fits(std::string* why) const {
  std::string w;
  if (f8_) w = "F8_E4M3 experts (their tensor-core GEMM is f8_gemm=wgmma)";
  else if (!bf16_grouped_experts::fits(E_, H_, I_, &w)) {
  } else if (reinterpret_cast<uintptr_t>(w13_) % 16 || reinterpret_cast<uintptr_t>(w2_) % 16 ||
             (Is_ == I_ && (reinterpret_cast<uintptr_t>(sw13_) % 16 || reinterpret_cast<uintptr_t>(sw2_) % 16)))
    w = "the expert weights are not 16-byte aligned (TMA reads them)";
  if (why) *why = w;
  return w.empty();
}

bool moe_layer::pick_wgmma(long long slots, bool cublas_taken) const {
  if (tuning_.tiles == "wgmma") return true;  // checked at create
  // graphs=on: decode passes stay on the kernels, which a graph captures (the grouped path's work
  // buffers grow from the host, so it is not captured yet).
  if (tuning_.tiles != "auto" || !tuning_.wgmma || tuning_.graphs || f8_ || cublas_taken) return false;
  // From wgmma_min_rows rows per expert on average, whatever the experts' size (H200, session
  // 26: qwen3 T = 1024 0.427 against the m64 kernel's 0.499 ms, mixtral T = 128 0.739 against
  // 0.799, deepseek T = 1024 5.86 against 6.39); below it the narrow kernels stream the weights
  // faster (T = 16: mixtral 0.84 against 0.67, deepseek 2.30 against 2.18; deepseek T = 128,
  // 4 rows an expert, a tie).
  if (slots < wgmma_min_rows * E_) return false;
  return bf16_wgmma_fits();
}

bf16_grouped_experts& moe_layer::bf16_grouped() {
  if (!bf16_grouped_) {
    bf16_grouped_ = std::make_unique<bf16_grouped_experts>(w13_, w2_, static_cast<int>(E_), static_cast<int>(H_),
                                                           static_cast<int>(I_), tuning_.wgmma_silu == "fused",
                                                           tuning_.wgmma_gather);
    if (Is_ == I_) bf16_grouped_->add_shared(sw13_, sw2_);
  }
  return *bf16_grouped_;
}

cublas_experts& moe_layer::blas() {
  if (!blas_) blas_ = std::make_unique<cublas_experts>(stream_);
  return *blas_;
}

tile_config moe_layer::pick_tiles(int rows_per_group, bool f8) const {
  // tiles=m16|m64|m128 forces one shape (tests, measurements).
  {
    const std::string& s = tuning_.tiles;
    if (s == "m16") return tile_config::m16;
    if (s == "m64") return tile_config::m64;
    if (s == "m128") return tile_config::m128;
  }
  if (rows_per_group <= 24) return tile_config::m16;
  // F8: the m128 tile's two warp rows would each dequantize the same weight fragments.
  if (rows_per_group <= 160 || f8) return tile_config::m64;
  return tile_config::m128;
}

std::string moe_layer::f8_large() const {
  std::string why;
  if (!tuning_.cublas) return "the kernels (cublas=off)";
  if (tuning_.f8_activations == "bf16") return "the exact-product kernels (f8_activations=bf16)";
  if (!f8_tensor_cores(&why)) return "the kernels (FP8 tensor cores not used: " + why + ")";
  if (!fp8_refused_.empty()) return "the kernels (FP8 tensor cores refused these shapes: " + fp8_refused_ + ")";
  return (tuning_.f8_gemm == "wgmma"
              ? std::string("FP8 tensor cores: moereg's grouped wgmma GEMM (one launch per projection)")
              : "FP8 tensor cores: cuBLASLt " + fp8_experts::version() + " block-scaled matmul") +
         ", activations quantized to e4m3 per 128 columns, for " +
         (tuning_.f8_activations == "e4m3" ? std::string("every size")
                                           : ">= " + std::to_string(cublas_min_rows) + " rows per hit expert");
}

std::string moe_layer::bf16_large() const {
  if (tuning_.tiles == "wgmma") return "moereg's grouped wgmma bf16 GEMM for every size (tiles=wgmma)";
  std::string s = !tuning_.cublas ? std::string("off (backend option cublas=off)")
                  : cublas_experts::available()
                      ? "cuBLAS " + cublas_experts::version() + " for >= " + std::to_string(bf16_cublas_min_rows()) +
                            " rows per hit expert (batched, per-expert or grouped, by expert sizes)"
                      : std::string("none: libcublas.so.13 not loadable; the kernels run every size");
  std::string why;
  if (!tuning_.wgmma) return s + "; grouped wgmma GEMM off (wgmma=off)";
  if (!bf16_wgmma_fits(&why)) return s + "; grouped wgmma GEMM not used: " + why;
  if (tuning_.graphs) return s + "; grouped wgmma GEMM not used: graphs=on keeps those passes on the captured kernels";
  return s + "; below it, moereg's grouped wgmma bf16 GEMM (one launch a projection) for passes of " +
         std::to_string(wgmma_min_rows) + " or more rows per expert on average";
}

int moe_layer::kernel_block(long long b) const { return static_cast<int>(std::min<long long>(b, std::max({H_, I_, Is_}))); }

bool moe_layer::shared_exact(int tokens) const {
  return shared_f8_ && f8_exact_products(kernel_block(scale_b1_), static_cast<int>(H_), static_cast<int>(Is_),
                                         pick_tiles(tokens, true));
}

bool moe_layer::f8_exact(tile_config c) const {
  return f8_ && f8_exact_products(kernel_block(scale_b1_), static_cast<int>(H_), static_cast<int>(I_), c);
}

moe_layer::pass_plan moe_layer::plan(int tokens) const {
  const long long slots = static_cast<long long>(tokens) * K_;
  pass_plan pl{pick_tiles(static_cast<int>((slots + E_ - 1) / E_)), false, cublas_mode::grouped};
  // Rows per expert as the caller routed them are not known on the host; the average over the
  // experts a uniform router would hit (min(E, slots)) stands in for it.
  pl.blas = slots > 0 && pick_cublas(slots, std::min<long long>(E_, slots), &pl.mode);
  pl.wgmma = slots > 0 && pick_wgmma(slots, pl.blas);
  if (pl.wgmma) pl.blas = true;
  return pl;
}

}  // namespace moereg::cuda
