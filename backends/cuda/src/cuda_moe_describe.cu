// SPDX-License-Identifier: Apache-2.0
// cuda_moe_describe.cu - the backend options a layer is created with (tuning::parse) and the
// JSON its describe writes.
#include <initializer_list>
#include <sstream>
#include <string>

#include "cuda_moe.h"
#include "host_views.h"

namespace moereg::cuda {

using namespace host;

namespace {

// `value` if it is one of `allowed`; else invalid_argument naming the option and what it takes
// ("expected a, b or c").
const std::string& one_of(const std::string& key, const std::string& value, std::initializer_list<const char*> allowed) {
  std::string expected;
  size_t i = 0;
  for (const char* a : allowed) {
    if (value == a) return value;
    expected += (i == 0 ? "" : i + 1 == allowed.size() ? " or " : ", ") + std::string(a);
    ++i;
  }
  throw invalid_argument("backend option " + key + "='" + value + "': expected " + expected);
}

}  // namespace

tuning tuning::parse(const moereg_backend_option* kv, size_t count) {
  tuning t;
  for (size_t i = 0; i < count; ++i) {
    const std::string key = kv[i].key ? kv[i].key : "", value = kv[i].value ? kv[i].value : "";
    if (key == "tiles")
      t.tiles = one_of(key, value, {"auto", "m16", "m64", "m128", "cublas", "cublas_loop", "cublas_batched", "cublas_auto",
                                         "wgmma"});
    else if (key == "wgmma")
      t.wgmma = one_of(key, value, {"auto", "off"}) == "auto";
    else if (key == "wgmma_silu")
      t.wgmma_silu = one_of(key, value, {"separate", "fused"});
    else if (key == "wgmma_gather")
      t.wgmma_gather = one_of(key, value, {"on", "off"}) == "on";
    else if (key == "cublas")
      t.cublas = one_of(key, value, {"auto", "off"}) == "auto";
    else if (key == "f8_activations")
      t.f8_activations = one_of(key, value, {"auto", "bf16", "e4m3"});
    else if (key == "f8_gemm")
      t.f8_gemm = one_of(key, value, {"wgmma", "cublaslt"});
    else if (key == "f8_gather")
      t.f8_gather = one_of(key, value, {"on", "off"}) == "on";
    else if (key == "f8_tile")
      t.f8_tile = one_of(key, value, {"128x128", "128x256"});
    else if (key == "f8_silu")
      t.f8_silu = one_of(key, value, {"separate", "fused"});
    else if (key == "graphs")
      t.graphs = one_of(key, value, {"on", "off"}) == "on";
    else if (key == "pdl")
      t.pdl = one_of(key, value, {"on", "off"}) == "on";
    else if (key == "slot_tiles")
      t.slot_tiles = one_of(key, value, {"auto", "off"}) == "auto";
    else if (key == "f8_decode")
      t.f8_decode = one_of(key, value, {"mma", "gemv"});
    else if (key == "narrow")
      t.narrow = one_of(key, value, {"auto", "fill", "off"});
    else
      throw invalid_argument("backend option '" + key +
                             "' is not a cuda backend option (it takes tiles, cublas, graphs, f8_activations, f8_gemm, "
                             "f8_gather, f8_tile, f8_silu, f8_decode, pdl, narrow, slot_tiles, wgmma, wgmma_silu, wgmma_gather)");
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
    << (f8_ ? f8_large() : bf16_large())
    << "\""
    << ",\"tiles\":{\"m16\":\"" << tile_name(tile_config::m16, f8_, f8_exact(tile_config::m16)) << "\",\"m64\":\"" << tile_name(tile_config::m64, f8_, f8_exact(tile_config::m64))
    << "\",\"m128\":\"" << tile_name(tile_config::m128, f8_, f8_exact(tile_config::m128)) << "\"}"
    << ",\"options\":{\"tiles\":\"" << tuning_.tiles << "\",\"cublas\":\"" << (tuning_.cublas ? "auto" : "off")
    << "\",\"graphs\":\"" << (tuning_.graphs ? "on" : "off") << "\",\"f8_activations\":\"" << tuning_.f8_activations << "\",\"f8_gemm\":\"" << tuning_.f8_gemm
    << "\",\"f8_gather\":\"" << (tuning_.f8_gather ? "on" : "off") << "\",\"f8_tile\":\"" << tuning_.f8_tile << "\",\"f8_silu\":\"" << tuning_.f8_silu << "\",\"f8_decode\":\"" << tuning_.f8_decode
    << "\",\"pdl\":\"" << (tuning_.pdl ? "on" : "off") << "\",\"narrow\":\"" << tuning_.narrow
    << "\",\"slot_tiles\":\"" << (tuning_.slot_tiles ? "auto" : "off") << "\",\"wgmma\":\"" << (tuning_.wgmma ? "auto" : "off")
    << "\",\"wgmma_silu\":\"" << tuning_.wgmma_silu
    << "\",\"wgmma_gather\":\"" << (tuning_.wgmma_gather ? "on" : "off") << "\"}"
    << ",\"last_graph\":\"" << last_graph_ << "\",\"graphs_cached\":" << graphs_.size()
    << ",\"last_tokens\":" << last_tokens_ << ",\"last_launch\":{\"gate_up_columns\":" << last_launch_.gate_up_columns
    << ",\"down_columns\":" << last_launch_.down_columns << "}"
    << ",\"last_tiles\":\"" << (last_path_.empty() ? tile_name(last_tiles_, f8_, f8_exact(last_tiles_)) : last_path_.c_str()) << "\"}";
  return o.str();
}

}  // namespace moereg::cuda
