// SPDX-License-Identifier: Apache-2.0
// gguf_model_metadata.h - the model sizes and constants in a GGUF's metadata (llama.cpp's
// `{arch}.` keys), checked against themselves before moereg makes a config from them
// (gguf_config) or writes a .gguf with them (gguf_metadata_for).
//
// Rules, for the keys present as scalars (per-layer arrays are left alone):
//  - sizes are integers from 1 to 2^31-1: block_count, context_length, embedding_length,
//    expert_count, expert_used_count, expert_feed_forward_length, expert_group_count,
//    expert_group_used_count, vocab_size, rope.dimension_count, attention.head_count,
//    attention.head_count_kv, attention.key_length, attention.value_length,
//    attention.key_length_mla, attention.value_length_mla, attention.kv_lora_rank;
//  - counts are integers from 0 to 2^31-1: feed_forward_length, expert_shared_count,
//    expert_shared_feed_forward_length, leading_dense_block_count, attention.q_lora_rank,
//    attention.sliding_window;
//  - every float is finite; layer_norm_rms_epsilon, layer_norm_epsilon, rope.freq_base,
//    rope.scaling.factor and expert_weights_scale are > 0;
//  - expert_used_count <= expert_count; expert_group_used_count <= expert_group_count, and
//    expert_count a multiple of expert_group_count; head_count_kv <= head_count and divides
//    it; head_count <= embedding_length; leading_dense_block_count <= block_count.
#pragma once

#include <functional>
#include <string>

#include "moereg/gguf/gguf_file.h"

namespace moereg {

// Throws moereg::error "<where>: <name(key)>: expected <x>, found <y>" (or "<where>:
// <name(a)> = 9 is more than <name(b)> = 8 (why)") for the first rule broken. `where` is the
// file the values came from; `name(key)` names a full key there ("gguf metadata
// 'qwen3moe.expert_count'", or the config.json field it was made from).
void check_gguf_model_metadata(const gguf_metadata& metadata, const std::string& arch, const std::string& where,
                               const std::function<std::string(const std::string& key)>& name);

}  // namespace moereg
