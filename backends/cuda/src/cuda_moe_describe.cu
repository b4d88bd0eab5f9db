// SPDX-License-Identifier: Apache-2.0
// cuda_moe_describe.cu - the backend options a layer is created with (tuning::parse) and the
// JSON its describe writes.
#include <sstream>
#include <string>

#include "cuda_moe.h"
#include "host_views.h"

namespace moereg::cuda {

using namespace host;

tuning tuning::parse(const moereg_backend_option* kv, size_t count) {
  tuning t;
  for (size_t i = 0; i < count; ++i) {
    const std::string key = kv[i].key ? kv[i].key : "", value = kv[i].value ? kv[i].value : "";
    if (key == "tiles") {
      static const char* ok[] = {"auto", "m16", "m64", "m128", "cublas", "cublas_loop", "cublas_batched", "cublas_auto"};
      bool known = false;
      for (const char* v : ok) known |= value == v;
      if (!known)
        throw invalid_argument("backend option tiles='" + value +
                               "': expected auto, m16, m64, m128, cublas, cublas_loop, cublas_batched or cublas_auto");
      t.tiles = value;
    } else if (key == "cublas") {
      if (value != "auto" && value != "off") throw invalid_argument("backend option cublas='" + value + "': expected auto or off");
      t.cublas = value == "auto";
    } else if (key == "f8_activations") {
      if (value != "auto" && value != "bf16" && value != "e4m3")
        throw invalid_argument("backend option f8_activations='" + value + "': expected auto, bf16 or e4m3");
      t.f8_activations = value;
    } else if (key == "f8_gemm") {
      if (value != "wgmma" && value != "cublaslt")
        throw invalid_argument("backend option f8_gemm='" + value + "': expected wgmma or cublaslt");
      t.f8_gemm = value;
    } else if (key == "f8_gather") {
      if (value != "on" && value != "off") throw invalid_argument("backend option f8_gather='" + value + "': expected on or off");
      t.f8_gather = value == "on";
    } else if (key == "f8_tile") {
      if (value != "128x128" && value != "128x256")
        throw invalid_argument("backend option f8_tile='" + value + "': expected 128x128 or 128x256");
      t.f8_tile = value;
    } else if (key == "f8_silu") {
      if (value != "separate" && value != "fused")
        throw invalid_argument("backend option f8_silu='" + value + "': expected separate or fused");
      t.f8_silu = value;
    } else if (key == "graphs") {
      if (value != "on" && value != "off") throw invalid_argument("backend option graphs='" + value + "': expected on or off");
      t.graphs = value == "on";
    } else if (key == "pdl") {
      if (value != "on" && value != "off") throw invalid_argument("backend option pdl='" + value + "': expected on or off");
      t.pdl = value == "on";
    } else if (key == "slot_tiles") {
      if (value != "auto" && value != "off") throw invalid_argument("backend option slot_tiles='" + value + "': expected auto or off");
      t.slot_tiles = value == "auto";
    } else if (key == "f8_decode") {
      if (value != "mma" && value != "gemv") throw invalid_argument("backend option f8_decode='" + value + "': expected mma or gemv");
      t.f8_decode = value;
    } else if (key == "narrow") {
      if (value != "auto" && value != "fill" && value != "off")
        throw invalid_argument("backend option narrow='" + value + "': expected auto, fill or off");
      t.narrow = value;
    } else {
      throw invalid_argument("backend option '" + key +
                             "' is not a cuda backend option (it takes tiles, cublas, graphs, f8_activations, f8_gemm, "
                             "f8_gather, f8_tile, f8_silu, f8_decode, pdl, narrow, slot_tiles)");
    }
  }
  return t;
}

long long moe_layer::f8_scale_bytes() const {
  return 4 * E_ * (2 * cdiv(I_, scale_b0_) * cdiv(H_, scale_b1_) + cdiv(H_, scale_b0_) * cdiv(I_, scale_b1_));
}

std::string moe_layer::describe() const {
  std::ostringstream o;
  o.precision(4);
  o << "{\"backend\":\"cuda\",\"device\":\"" << device_name_ << "\",\"compute_capability\":\"" << sm_major_ << "."
    << sm_minor_ << "\",\"isa\":\"sm_90a\",\"experts\":" << E_ << ",\"hidden\":" << H_ << ",\"intermediate\":" << I_
    << ",\"shared_intermediate\":" << Is_
    << (!Is_ ? std::string()
        : shared_f8_ ? std::string(",\"shared_dtype\":\"F8_E4M3\",\"shared\":\"F8_E4M3 with block scales on the kernels") +
                           (shared_in_grouped() ? "; on FP8 tensor cores one more expert of the grouped GEMM\""
                            : sw13_             ? "; a BF16 copy for passes on cuBLAS\""
                                                : "\"")
                     : std::string(",\"shared_dtype\":\"BF16\""))
    << ",\"top_k\":" << K_ << ",\"weights_dtype\":\"" << (f8_ ? "F8_E4M3" : "BF16") << "\""
    << (f8_ ? ",\"scale_block\":[" + std::to_string(scale_b0_) + "," + std::to_string(scale_b1_) + "]" : std::string())
    << (f8_ ? ",\"weight_bytes\":" + std::to_string(E_ * 3 * I_ * H_) + ",\"scale_bytes\":" + std::to_string(f8_scale_bytes())
            : std::string())
    << ",\"weights\":\"" << (borrowed_ ? "borrowed: read in the caller's device memory, no copy" : "copied from host memory")
    << "\",\"bytes_on_device\":" << weight_bytes_ << ",\"load_seconds\":" << load_seconds_
    << ",\"load_gbps\":" << load_gbps_ << ",\"h2d_gbps\":" << h2d_gbps_
    << ",\"router\":\"" << (has_router_ ? "device" : "none") << "\""
    << ",\"gemm\":\"mma.sync m16n8k16 bf16, fp32 accumulate, fused SiLU-gate epilogue, float2-atomic un-permute"
    << (!f8_ ? ""
        : f8_exact(tile_config::m16)
            ? "; F8_E4M3 weights read as stored: e4m3 -> f16 mma on activations in f16 times a power of two per row, "
              "each k tile's sum times its block scale (exact q x scale products)"
            : "; F8_E4M3 weights read as stored and dequantized per tile to bf16 (q x scale, rounded once)")
    << "\""
    << ",\"gemm_large\":\""
    << (f8_ ? f8_large()
        : !tuning_.cublas ? std::string("off (backend option cublas=off)")
        : cublas_experts::available()
            ? "cuBLAS " + cublas_experts::version() + " for >= " + std::to_string(bf16_cublas_min_rows()) +
                  " rows per hit expert (batched, per-expert or grouped, by expert sizes)"
            : std::string("none: libcublas.so.13 not loadable; the kernels run every size"))
    << "\""
    << ",\"tiles\":{\"m16\":\"" << tile_name(tile_config::m16, f8_, f8_exact(tile_config::m16)) << "\",\"m64\":\"" << tile_name(tile_config::m64, f8_, f8_exact(tile_config::m64))
    << "\",\"m128\":\"" << tile_name(tile_config::m128, f8_, f8_exact(tile_config::m128)) << "\"}"
    << ",\"options\":{\"tiles\":\"" << tuning_.tiles << "\",\"cublas\":\"" << (tuning_.cublas ? "auto" : "off")
    << "\",\"graphs\":\"" << (tuning_.graphs ? "on" : "off") << "\",\"f8_activations\":\"" << tuning_.f8_activations << "\",\"f8_gemm\":\"" << tuning_.f8_gemm
    << "\",\"f8_gather\":\"" << (tuning_.f8_gather ? "on" : "off") << "\",\"f8_tile\":\"" << tuning_.f8_tile << "\",\"f8_silu\":\"" << tuning_.f8_silu << "\",\"f8_decode\":\"" << tuning_.f8_decode
    << "\",\"pdl\":\"" << (tuning_.pdl ? "on" : "off") << "\",\"narrow\":\"" << tuning_.narrow
    << "\",\"slot_tiles\":\"" << (tuning_.slot_tiles ? "auto" : "off") << "\"}"
    << ",\"last_graph\":\"" << last_graph_ << "\",\"graphs_cached\":" << graphs_.size()
    << ",\"last_tokens\":" << last_tokens_ << ",\"last_launch\":{\"gate_up_columns\":" << last_launch_.gate_up_columns
    << ",\"down_columns\":" << last_launch_.down_columns << "}"
    << ",\"last_tiles\":\"" << (last_path_.empty() ? tile_name(last_tiles_, f8_, f8_exact(last_tiles_)) : last_path_.c_str()) << "\"}";
  return o.str();
}

}  // namespace moereg::cuda
