// SPDX-License-Identifier: Apache-2.0
// gguf_family.h - a family plugin's `gguf` section applied to files: which model_type a
// .gguf is, the config.json made from its metadata (tensor shapes as fallback), and the
// metadata a .gguf written for the family carries. The mapping itself is data
// (plugin.yaml, docs/yaml-reference.md); nothing here knows a family.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "moereg/base/json.h"
#include "moereg/gguf/gguf_file.h"
#include "moereg/layout/family_spec.h"
#include "moereg/safetensors/safetensors_writer.h"

namespace moereg {

// The model_type a GGUF file is under one plugin's mapping (`claimed`: the plugin's
// model_types, the first being the default), or nullopt when general.architecture differs
// or no gguf.model_types rule holds.
std::optional<std::string> gguf_model_type(const gguf_file& file, const gguf_spec& gguf,
                                           const std::vector<std::string>& claimed);

// config.json for a GGUF model: "model_type", every metadata rule's config field that the
// file has, then E, H, I, K and the layer count from the tensors where the metadata lacks
// them (read_gguf_moe_dims; the highest blk.N). Throws moereg::error naming the file and
// the key when top-k (expert_used_count) is missing, as shapes cannot give it.
json::value gguf_config(const gguf_file& file, const family_spec& spec);

// The metadata of a .gguf written for this family from config.json: general.architecture,
// then every rule whose config field is present (or constant), as its declared type.
// Throws moereg::error naming config_path and the field when a value does not fit its type.
// Rules with `with_tensor` are written only when `tensors` (the file's, GGUF names) has one.
gguf_metadata gguf_metadata_for(const family_spec& spec, const json::value& config, const std::string& config_path,
                                const std::vector<tensor_spec>* tensors = nullptr);

// Everything a .gguf written from `config` holds besides the tensors, as llama.cpp's converter
// writes it: gguf_metadata_for's keys, then general.type / file_type / quantization_version
// (file_type from the tensors: the ggml type holding most bytes of the 2-D+ ones), then every
// other key of a .gguf source (`source`, may be null: general.name, ...), then the tokenizer:
// a source's that has one (tokenizer.ggml.model not "none") as it is; else the tokenizer files
// in `tokenizer_dir` (empty: none) as gguf_family_tokenizer makes them (gguf_tokenizer.h); else
// tokenizer.ggml.model = "none" (llama.cpp then makes {arch}.vocab_size dummy tokens, which the
// families' rules write). `tokenizer_skipped` (may be null) gets why tokenizer files that are
// there were not converted.
gguf_metadata gguf_output_metadata(const family_spec& spec, const json::value& config, const std::string& config_path,
                                   const gguf_file* source, const std::vector<tensor_spec>& tensors,
                                   const std::string& tokenizer_dir = {}, std::string* tokenizer_skipped = nullptr);

// Whether a BF16/F16 tensor is written F32 in a .gguf for this family, as llama.cpp's converter
// does (its CPU ops take norms, routers and 1-D tensors only as F32): 1-D tensors, names
// ending in _norm.weight or not in .weight, and the family's gguf.f32 names. Widening is exact.
// A .gguf moereg writes lists, under this key (a STRING array), the tensors it holds as F32
// because the source held them as F32, where llama.cpp's converter would have widened a BF16
// tensor: a bf16 model's F32 router or selection bias. Reading the .gguf, those keep F32;
// other such F32 tensors of a bf16 model are narrowed back to the BF16 they were widened from.
inline constexpr const char* gguf_f32_as_stored_key = "moereg.f32_as_stored";

bool gguf_wants_f32(const family_spec& spec, const tensor_spec& tensor);

}  // namespace moereg
