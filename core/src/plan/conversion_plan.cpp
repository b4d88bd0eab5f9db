// SPDX-License-Identifier: Apache-2.0
#include "moereg/plan/conversion_plan.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <unordered_map>

#include "moereg/base/error.h"
#include "moereg/base/printable.h"
#include "moereg/gguf/ggml_dequant.h"
#include "moereg/gguf/ggml_type.h"
#include "moereg/gguf/gguf_family.h"
#include "tensor_splits.h"

namespace moereg {

namespace {

std::string describe_view(const matrix_view& v) {
  std::string s = v.source->info->name;
  bool whole = v.offset == 0 && v.nbytes() == v.source->info->nbytes() && v.contiguous();
  if (!whole) {
    s += "[";
    auto in_matrix = static_cast<std::int64_t>(v.offset);
    if (v.source->info->shape.size() == 3) {
      std::int64_t per = v.source->info->shape[1] * v.source->info->shape[2];
      s += std::to_string(in_matrix / per) + ", ";
      in_matrix %= per;
    }
    // Which of the stored matrix's rows (its columns, when stored transposed) the piece is:
    // gate and up of one fused tensor differ only here.
    const bool transposed = v.col_stride != 1;
    const std::int64_t first = transposed ? in_matrix : (v.row_stride > 0 ? in_matrix / v.row_stride : 0);
    s += std::string(transposed ? "columns " : "rows ") + std::to_string(first) + ".." + std::to_string(first + v.rows - 1) +
         (transposed ? " (transposed)" : "") + "]";
  }
  return s;
}

// The scales of one expert weight output: per slot, each piece's scale view, joined along
// rows like the pieces (refused where a block would be cut), in the weight's orientation.
output_tensor scale_output(const decoded_checkpoint& src, const layout_spec& target, const expert_entry& e,
                           const output_tensor& weight_out) {
  const quant_format& q = src.quant;
  const assembled_output& weight = *weight_out.assembled();
  output_tensor out;
  assembled_output& o = out.body.emplace<assembled_output>();
  o.entry = &e;
  o.layer = weight.layer;
  o.transpose = weight.transpose;
  const std::string& weight_name = weight_out.spec.name;
  const std::string weight_key = q.names.weight == "{key}" ? weight_name : *unapply_naming(q.names.weight, weight_name);
  tensor_spec& spec = out.spec;
  spec.name = apply_naming(q.names.scale[src.scale_naming], weight_key);
  spec.type = src.scale_dtype;
  const auto& scales = src.expert_scales.at(weight.layer);
  for (std::size_t s = 0; s < weight.slots.size(); ++s) {
    const std::int64_t expert = weight.first_expert + static_cast<std::int64_t>(s);
    std::vector<matrix_view> views;
    std::optional<scale_grid> joined;
    std::int64_t rows = 0, cols = -1;
    for (piece p : e.pieces) {
      const piece_scales& ps = scales[static_cast<std::size_t>(expert)][static_cast<std::size_t>(p)];
      joined = joined ? concat_rows(spec.name, *joined, ps.grid) : ps.grid;
      views.push_back(ps.scale);
      rows += ps.scale.rows;
      if (cols >= 0 && cols != ps.scale.cols)
        throw error(spec.name + ": the pieces' scales have " + std::to_string(cols) + " and " + std::to_string(ps.scale.cols) +
                    " columns; expected the same scale layout");
      cols = ps.scale.cols;
    }
    if (s == 0) {
      o.rows_total = rows;
      o.cols = cols;
    } else if (rows != o.rows_total || cols != o.cols) {
      throw error(spec.name + ": expert " + std::to_string(expert) + " has " + joined->describe() + " (" + std::to_string(rows) +
                  "x" + std::to_string(cols) + " scales), unlike expert " + std::to_string(weight.first_expert) + " (" +
                  std::to_string(o.rows_total) + "x" + std::to_string(o.cols) + "); one stacked tensor needs one scale layout");
    }
    o.slots.push_back(std::move(views));
  }
  if (e.stacked) spec.shape.push_back(static_cast<std::int64_t>(weight.slots.size()));
  if (o.transpose) spec.shape.insert(spec.shape.end(), {o.cols, o.rows_total});
  else spec.shape.insert(spec.shape.end(), {o.rows_total, o.cols});
  // A one-expert 2-D source scale keeps its shape (a copy into the same per-expert form is
  // bit for bit); a squeezed or stacked one is written as the target says.
  const tensor_info& first = *o.slots.front().front().source->info;
  const bool two_d_source = o.slots.size() == 1 && weight.slots.size() == 1 && o.slots.front().size() == 1 &&
                            first.shape.size() == 2 && first.shape[0] * first.shape[1] == o.rows_total * o.cols;
  if (!e.stacked && target.squeeze_expert_scales && q.scheme == quant_scheme::fp8 && !two_d_source)
    spec.shape.erase(std::remove(spec.shape.begin(), spec.shape.end(), 1), spec.shape.end());
  out.origin = "scales of " + weight_name + " (" + o.slots.front().front().source->info->name +
             (o.slots.front().size() > 1 || weight.slots.size() > 1 ? ", ..." : "") + ")";
  return out;
}

// GPTQ g_idx / qzeros and compressed-tensors weight_shape of one expert weight output, when
// the source had them: decoding checked they carry nothing but the format, so they are
// made again for the target's shape.
std::vector<output_tensor> restated_companions(const decoded_checkpoint& src, const expert_entry& e, const output_tensor& weight_out) {
  const quant_format& q = src.quant;
  const assembled_output& weight = *weight_out.assembled();
  std::vector<output_tensor> out;
  const std::int64_t n = weight.rows_total;
  const std::int64_t k = src.expert_scales.at(weight.layer)[static_cast<std::size_t>(weight.first_expert)]
                                                         [static_cast<std::size_t>(e.pieces.front())].grid.cols;
  const std::int64_t slots = static_cast<std::int64_t>(weight.slots.size());
  const std::string key = *unapply_naming(q.names.weight, weight_out.spec.name);
  auto make = [&](const std::string& naming, dtype t, std::vector<std::int64_t> shape, std::vector<std::byte> bytes) {
    output_tensor o;
    o.spec = {apply_naming(naming, key), t, {}};
    if (e.stacked) o.spec.shape.push_back(slots);
    o.spec.shape.insert(o.spec.shape.end(), shape.begin(), shape.end());
    o.body = literal_output{std::make_shared<const std::vector<std::byte>>(std::move(bytes))};
    o.origin = "restated for " + weight_out.spec.name;
    out.push_back(std::move(o));
  };
  const std::int64_t group = q.group > 0 ? q.group : k;
  if (src.has_g_idx && !q.names.g_idx.empty()) {
    std::vector<std::int32_t> v;
    for (std::int64_t s = 0; s < slots; ++s)
      for (std::int64_t i = 0; i < k; ++i) v.push_back(static_cast<std::int32_t>(i / group));
    std::vector<std::byte> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    make(q.names.g_idx, dtype::I32, {k}, std::move(b));
  }
  if (src.has_zeros && !q.names.zeros.empty()) {
    const std::int64_t groups = (k + group - 1) / group, words = (n + 7) / 8;
    std::vector<std::int32_t> v(static_cast<std::size_t>(slots * groups * words), q.zero_word);
    std::vector<std::byte> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    make(q.names.zeros, dtype::I32, {groups, words}, std::move(b));
  }
  if (src.has_shape && !q.names.shape.empty()) {
    std::vector<std::int64_t> v;
    if (e.stacked) v.push_back(slots);
    v.insert(v.end(), {n, k});
    std::vector<std::byte> b(v.size() * dtype_size(src.shape_dtype));
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (src.shape_dtype == dtype::I64) std::memcpy(b.data() + 8 * i, &v[i], 8);
      else {
        auto x = static_cast<std::int32_t>(v[i]);
        std::memcpy(b.data() + 4 * i, &x, 4);
      }
    }
    make(q.names.shape, src.shape_dtype, {}, std::move(b));
    out.back().spec.shape = {static_cast<std::int64_t>(v.size())};
  }
  return out;
}

// A quantized pass-through weight (attention, shared experts) as one bf16 matrix.
output_tensor dequantized_passthrough(const decoded_checkpoint& src, const layout_spec& target, const passthrough_tensor& p) {
  const quant_format& q = src.quant;
  const checkpoint::entry& w = *p.source;
  const checkpoint::entry& s = *p.scale;
  const std::vector<std::int64_t>& ws = w.info->shape;
  if (ws.size() != 2)
    throw error(w.info->name + ": cannot dequantize a rank-" + std::to_string(ws.size()) + " quantized weight " +
                shape_string(ws) + "; expected a [out, in] matrix");
  output_tensor out;
  assembled_output& o = out.body.emplace<assembled_output>();  // one slot, no expert entry
  o.decoding = piece_decoding::dequantize;
  matrix_view v{&w, 0, ws[0], ws[1], ws[1], 1, w.info->type};
  piece_scales ps;
  if (q.stored_transposed()) v = {&w, 0, ws[1], ws[0], 1, ws[1], w.info->type};  // [K/8, N] seen as [N, K/8]
  const std::int64_t rows = v.rows, cols = v.cols * q.pack();
  if (q.scheme == quant_scheme::fp8) {
    ps.grid = classify_fp8_scale(s.info->name, ws, s.info->shape, q.block);
    if (ps.grid.kind == scale_kind::per_tensor) ps.grid.block_rows = ps.grid.rows = rows;
    ps.grid.batch = 1;
  } else {
    ps.grid = q.group_grid_for(rows, cols);
  }
  const std::int64_t gr = ps.grid.grid_rows(), gc = ps.grid.grid_cols();
  std::vector<std::int64_t> want = q.stored_transposed() ? std::vector<std::int64_t>{gc, gr} : std::vector<std::int64_t>{gr, gc};
  if (q.scheme != quant_scheme::fp8 && s.info->shape != want)
    throw error(s.info->name + ": scale shape " + shape_string(s.info->shape) + ", expected " + shape_string(want) + " (" +
                ps.grid.describe() + " over the " + std::to_string(rows) + "x" + std::to_string(cols) + " matrix of " +
                w.info->name + ")");
  ps.scale = q.stored_transposed() ? matrix_view{&s, 0, gr, gc, 1, gr, s.info->type} : matrix_view{&s, 0, gr, gc, gc, 1, s.info->type};
  out.spec = {from_canonical(target, p.quant_key), dtype::BF16, {rows, cols}};
  o.rows_total = rows;
  o.cols = cols;
  o.slots = {{v}};
  o.slot_scales = {{ps}};
  out.origin = "dequantize " + w.info->name + " with " + s.info->name + " (" + ps.grid.describe() + ") to BF16";
  return out;
}

}  // namespace

namespace {

// --dtype from a .gguf decodes ggml blocks (and F16/BF16 matrices) through ggml's to_float.
bool ggml_decoding(const decoded_checkpoint& src, const plan_options& options) {
  return options.dequantize && src.ckpt && src.ckpt->gguf();
}

// The ggml type a stored tensor's bytes are decoded as; an error naming the tensor and the
// ggml type when moereg does not decode it.
ggml_type decodable_ggml_type(const tensor_info& t) {
  std::optional<ggml_type> g = t.ggml_blocks ? std::optional<ggml_type>(static_cast<ggml_type>(*t.ggml_blocks)) : ggml_type_for(t.type);
  if (!g || !ggml_dequantize_supported(*g))
    throw error(printable(t.name) + ": " + storage_type_name(t) +
                " is not decoded by moereg (--dtype decodes F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, "
                "Q5_K, Q6_K and MXFP4)");
  return *g;
}

// Values per row of a view: views of ggml blocks count bytes.
std::int64_t view_elements(const matrix_view& v) {
  const tensor_info& t = *v.source->info;
  if (!t.ggml_blocks) return v.cols;
  const auto tr = ggml_traits(*t.ggml_blocks);
  return v.cols / static_cast<std::int64_t>(tr->type_size) * static_cast<std::int64_t>(tr->block_size);
}

// --experts A:B, checked against E.
std::pair<std::int64_t, std::int64_t> expert_range(const model_dims& d, const plan_options& options) {
  if (!options.experts) return {0, d.E};
  const auto [first, last] = *options.experts;
  if (first < 0 || last > d.E || first >= last)
    throw error("--experts " + std::to_string(first) + ":" + std::to_string(last) + " is not a non-empty range within 0:" +
                std::to_string(d.E) + " (E=" + std::to_string(d.E) + ")");
  return {first, last};
}

// ggml blocks (opaque bytes) stay rows of whole blocks: no transposes, one type per tensor.
// Returns the entry's block type (none for plain dtypes); throws when the pieces disagree.
std::optional<std::uint32_t> entry_blocks(const layout_spec& target, const expert_entry& e, int layer,
                                          const std::vector<std::array<matrix_view, 3>>& experts) {
  const tensor_info& first = *experts[0][static_cast<std::size_t>(e.pieces[0])].source->info;
  std::optional<std::uint32_t> blocks = first.ggml_blocks;
  for (piece p : e.pieces)
    for (const auto& ex : experts)
      if (ex[static_cast<std::size_t>(p)].source->info->ggml_blocks != blocks ||
          ex[static_cast<std::size_t>(p)].type != experts[0][static_cast<std::size_t>(e.pieces[0])].type)
        throw error("layer " + std::to_string(layer) + ": layout '" + target.name + "' entry '" + e.name + "' would put " +
                    storage_type_name(*ex[static_cast<std::size_t>(p)].source->info) + " and " + storage_type_name(first) +
                    " pieces into one tensor (types are carried, not converted, without --dtype)");
  if (blocks && e.transpose)
    throw error("layer " + std::to_string(layer) + ": layout '" + target.name + "' stores '" + e.name +
                "' transposed, which would cut the ggml blocks (" + storage_type_name(first) + ") apart");
  return blocks;
}

// The outputs of one entry of the target layout for one layer: one stacked tensor, or one per
// expert, each with its slots (and, when quantized, its scales and restated companions).
class entry_planner {
 public:
  entry_planner(const decoded_checkpoint& src, const layout_spec& target, const expert_entry& e, int layer,
                std::int64_t first, std::int64_t last, bool renumber, bool dequantize, std::optional<dtype> decode_ggml_to)
      : src_(src), e_(e), layer_(layer), first_(first), last_(last), renumber_(renumber), dequantize_(dequantize), decode_to_(decode_ggml_to),
        experts_(src.experts.at(layer)) {
    transpose_ = dequantize || decode_to_ ? e.transpose : e.transpose != src.quant.stored_transposed();
    for (piece p : e.pieces) {
      const matrix_view& v = experts_[0][static_cast<std::size_t>(p)];
      rows_total_ += v.rows;
      cols_ = dequantize ? src.expert_scales.at(layer)[0][static_cast<std::size_t>(p)].grid.cols
              : decode_to_ ? view_elements(v)
                           : v.cols;
      if (decode_to_) decodable_ggml_type(*v.source->info);
    }
    // Decoded pieces may differ in type (llama.cpp's quantizer leaves Q8_0 gate/up beside
    // F16 down); carried ones must agree.
    if (!decode_to_) blocks_ = entry_blocks(target, e, layer, experts_);
  }

  std::vector<output_tensor> outputs() const {
    std::vector<output_tensor> made;
    if (e_.stacked) {
      output_tensor o = make(0);
      for (std::int64_t x = first_; x < last_; ++x) add_slot(*o.assembled(), x);
      o.origin = "stack experts " + std::to_string(first_) + ".." + std::to_string(last_ - 1) + " of " +
                 (e_.pieces.size() > 1 ? "concat(" + parts(o) + ")" : parts(o)) + (e_.transpose ? ", transposed" : "");
      made.push_back(std::move(o));
    } else {
      for (std::int64_t x = first_; x < last_; ++x) {
        output_tensor o = make(x);
        add_slot(*o.assembled(), x);
        o.origin = parts(o) + (e_.transpose ? ", transposed" : "");
        made.push_back(std::move(o));
      }
    }
    if (dequantize_)
      for (auto& o : made) o.origin = "dequantize " + o.origin + " (" + src_.quant.describe() + ") to BF16";
    if (decode_to_)
      for (auto& o : made) o.origin = "decode " + o.origin + " (ggml to_float) to " + std::string(dtype_name(*decode_to_));
    return made;
  }

 private:
  output_tensor make(std::int64_t expert_in_key) const {
    const quant_format& q = src_.quant;
    output_tensor out;
    assembled_output& o = out.body.emplace<assembled_output>();
    o.entry = &e_;
    o.layer = layer_;
    o.rows_total = rows_total_;
    o.cols = cols_;
    o.transpose = transpose_;
    o.first_expert = e_.stacked ? first_ : expert_in_key;
    captures c{{"layer", std::to_string(layer_)}, {"expert", std::to_string(renumber_ ? expert_in_key - first_ : expert_in_key)}};
    out.spec.name = q.quantized() && !dequantize_ ? apply_naming(q.names.weight, e_.key.format(c)) : e_.key.format(c);
    // Each entry keeps its own pieces' type: a layer's entries may differ (Q8_0 beside F16).
    out.spec.type = dequantize_ ? dtype::BF16 : decode_to_ ? *decode_to_ : experts_[0][static_cast<std::size_t>(e_.pieces[0])].type;
    o.decoding = dequantize_ ? piece_decoding::dequantize : decode_to_ ? piece_decoding::ggml : piece_decoding::copy;
    out.spec.ggml_blocks = blocks_;
    if (e_.stacked) out.spec.shape.push_back(last_ - first_);
    if (transpose_) out.spec.shape.insert(out.spec.shape.end(), {cols_, rows_total_});
    else out.spec.shape.insert(out.spec.shape.end(), {rows_total_, cols_});
    return out;
  }
  void add_slot(assembled_output& o, std::int64_t x) const {
    std::vector<matrix_view> pieces;
    for (piece p : e_.pieces) pieces.push_back(experts_[static_cast<std::size_t>(x)][static_cast<std::size_t>(p)]);
    o.slots.push_back(std::move(pieces));
    if (!dequantize_) return;
    std::vector<piece_scales> ps;
    for (piece p : e_.pieces) ps.push_back(src_.expert_scales.at(layer_)[static_cast<std::size_t>(x)][static_cast<std::size_t>(p)]);
    o.slot_scales.push_back(std::move(ps));
  }
  static std::string parts(const output_tensor& o) {
    std::string s;
    for (const auto& v : o.assembled()->slots.front()) s += (s.empty() ? "" : " + ") + describe_view(v);
    return s;
  }

  const decoded_checkpoint& src_;
  const expert_entry& e_;
  int layer_;
  std::int64_t first_, last_;
  bool renumber_, dequantize_, transpose_ = false;
  std::optional<dtype> decode_to_;
  const std::vector<std::array<matrix_view, 3>>& experts_;
  std::int64_t rows_total_ = 0, cols_ = 0;
  std::optional<std::uint32_t> blocks_;
};

// Every expert output of the plan, with the scales and companions of quantized ones.
void plan_experts(const decoded_checkpoint& src, const layout_spec& target, const plan_options& options, conversion_plan& plan,
                  std::vector<std::string>& problems) {
  const auto [first, last] = expert_range(src.dims, options);
  const quant_format& q = src.quant;
  const bool dequantize = options.dequantize && q.quantized();
  const std::optional<dtype> decode_to = ggml_decoding(src, options) ? std::optional<dtype>(options.dequantize_to) : std::nullopt;
  for (const auto& layer_experts : src.experts) {
    const int layer = layer_experts.first;
    for (const auto& e : target.experts) {
      if (q.packed() && e.transpose && !options.dequantize) {
        problems.push_back("layout '" + target.name + "' entry '" + e.name + "' stores its matrices transposed, but " +
                           q.describe() + " weights are packed along the input axis and cannot be transposed");
        continue;
      }
      std::vector<output_tensor> made;
      try {
        made = entry_planner(src, target, e, layer, first, last, options.renumber_experts, dequantize, decode_to).outputs();
      } catch (const error& err) {
        problems.push_back(err.what());
        continue;
      }
      for (auto& o : made) {
        if (q.quantized() && !dequantize) {
          try {
            plan.outputs.push_back(scale_output(src, target, e, o));
            for (auto& lit : restated_companions(src, e, o)) plan.outputs.push_back(std::move(lit));
          } catch (const error& err) {
            problems.push_back(err.what());
          }
        }
        plan.outputs.push_back(std::move(o));
      }
    }
  }
}

// A stored tensor that is not an expert: renamed, with the hooks that rewrite its bytes.
output_tensor passthrough_output(const family_spec& family, const layout_spec& target, const passthrough_tensor& p) {
  output_tensor o;
  stored_output& st = o.body.emplace<stored_output>();
  std::string name = p.role == quant_role::none ? from_canonical(target, p.canonical)
                                                : apply_naming(p.quant_naming, from_canonical(target, p.quant_key));
  o.spec = {name, p.source->info->type, p.shape(), p.source->info->ggml_blocks};
  for (const auto& sq : target.squeezes) {  // a size-1 axis this layout does not store
    if (!sq.key.match(name)) continue;
    const auto axis = static_cast<std::size_t>(sq.axis);
    if (axis >= o.spec.shape.size() || o.spec.shape[axis] != 1 || o.spec.ggml_blocks)
      throw error(printable(p.source->info->name) + ": layout '" + target.name + "' stores " + quote(name) + " without axis " +
                  std::to_string(sq.axis) + " (squeeze at " + sq.at.str() + "), which must have size 1; its shape is " +
                  shape_string(o.spec.shape) + (o.spec.ggml_blocks ? " of ggml blocks" : ""));
    o.spec.shape.erase(o.spec.shape.begin() + sq.axis);
    break;
  }
  // llama.cpp's CPU ops take norms, routers and 1-D tensors only as F32; a .gguf F32 that was
  // widened from bf16 goes back to bf16 everywhere else.
  if (target.container == "gguf" && gguf_wants_f32(family, o.spec)) {
    st.cast_from = o.spec.type;
    o.spec.type = dtype::F32;
  } else if (p.narrow_to && target.container != "gguf") {
    st.cast_from = o.spec.type;
    o.spec.type = *p.narrow_to;
  }
  st.source = p.source;
  st.decode_hook = p.decode_hook;
  for (const auto& tr : target.transforms)
    if (tr.key.match(o.spec.name)) st.encode_hook = tr.hook;
  o.origin = p.source->info->name;
  if (!p.decode_hook.empty()) o.origin += " (hook " + p.decode_hook + " decode)";
  if (!st.encode_hook.empty()) o.origin += " (hook " + st.encode_hook + " encode)";
  if (st.cast_from)
    o.origin += " (" + std::string(dtype_name(*st.cast_from)) + (o.spec.type == dtype::F32 ? " widened" : " narrowed") + " to " +
                std::string(dtype_name(o.spec.type)) + ")";
  return o;
}

// A pass-through tensor of a .gguf under --dtype: its ggml blocks (or F16/BF16 elements)
// decoded as ggml does, written as `to`.
output_tensor ggml_decoded_passthrough(const family_spec& family, const layout_spec& target, const passthrough_tensor& p, dtype to) {
  const tensor_info& t = *p.source->info;
  decodable_ggml_type(t);
  output_tensor o = passthrough_output(family, target, p);
  stored_output& st = std::get<stored_output>(o.body);
  st.cast_from.reset();
  o.spec.type = to;
  o.spec.shape = element_shape(t);
  o.spec.ggml_blocks.reset();
  st.ggml_decode = true;
  o.origin += " (" + storage_type_name(t) + " decoded to " + std::string(dtype_name(to)) + ")";
  return o;
}

// Which pass-through tensors of a .gguf --dtype decodes: ggml blocks, and F16/BF16 matrices
// (F32 norms and routers stay F32, or go back to a bf16 model's BF16).
bool decoded_by_dtype(const passthrough_tensor& p) {
  const tensor_info& t = *p.source->info;
  return t.ggml_blocks || ((t.type == dtype::F16 || t.type == dtype::BF16) && t.shape.size() >= 2);
}

void plan_others(const decoded_checkpoint& src, const layout_spec& target, const plan_options& options, conversion_plan& plan,
                 std::vector<std::string>& problems) {
  const bool decode = ggml_decoding(src, options);
  if (options.dequantize && options.dequantize_to != dtype::BF16 && !decode)
    problems.push_back("--dtype " + std::string(dtype_name(options.dequantize_to)) + " decodes the ggml blocks of a .gguf, and this is " +
                       (src.quant.quantized() ? "a quantized safetensors checkpoint (" + src.quant.describe() +
                                                    "), which dequantizes to bf16 (--dtype bf16)"
                                              : "a safetensors checkpoint of " + std::string(dtype_name(src.expert_dtype)) +
                                                    " experts; converting float dtypes is not supported"));
  if (options.dequantize && !decode && !src.quant.quantized() && src.expert_dtype != dtype::BF16)
    problems.push_back("--dtype bf16 dequantizes quantized checkpoints; this one is not quantized (experts are " +
                       std::string(dtype_name(src.expert_dtype)) + "), and converting float dtypes is not supported");
  for (const auto& p : src.others) {
    const std::string& key = p.role == quant_role::none ? p.canonical : p.quant_key;
    if (std::any_of(target.drops.begin(), target.drops.end(), [&](const key_template& t) { return t.match(key).has_value(); }))
      continue;  // a part this layout does not hold (docs/yaml-reference.md, `drops`)
    if (options.dequantize && p.role != quant_role::none && detail::split_cutting(target, p.quant_key, nullptr)) {
      // A dequantized weight is made whole (dequantized_passthrough) and would be written
      // unsplit beside metadata for the split form: refused, once, by the weight. Without
      // --dtype the quantized bytes go on as they are (a .gguf then refuses their dtype).
      if (p.role == quant_role::data)
        problems.push_back(printable(p.source->info->name) + ": quantized (" + src.quant.describe() + "), but layout '" + target.name +
                           "' cuts " + quote(p.quant_key) +
                           " per head (splits), which moereg does for F32, F16 and BF16 tensors only; convert to a "
                           "safetensors layout with --dtype bf16 first, then to '" + target.name + "'");
      continue;
    }
    if (detail::takes_split_path(target, p)) {  // cut per head, or joined from such a cut
      try {
        const bool decode_this = decode && decoded_by_dtype(p);
        for (auto& o : detail::split_outputs(src, target, p, decode_this ? std::optional<dtype>(options.dequantize_to) : std::nullopt))
          plan.outputs.push_back(std::move(o));
      } catch (const error& err) {
        problems.push_back(err.what());
      }
      continue;
    }
    if (decode && decoded_by_dtype(p)) {
      try {
        plan.outputs.push_back(ggml_decoded_passthrough(*src.spec, target, p, options.dequantize_to));
      } catch (const error& err) {
        problems.push_back(err.what());
      }
      continue;
    }
    if (decode && options.dequantize_to == dtype::F32 && p.narrow_to) {  // --dtype f32 keeps the F32 norms
      passthrough_tensor wide = p;
      wide.narrow_to.reset();
      plan.outputs.push_back(passthrough_output(*src.spec, target, wide));
      continue;
    }
    if (options.dequantize && p.role != quant_role::none) {
      if (p.role != quant_role::data) continue;  // scales and the rest go with their weight
      try {
        plan.outputs.push_back(dequantized_passthrough(src, target, p));
      } catch (const error& err) {
        problems.push_back(err.what());
      }
      continue;
    }
    try {
      plan.outputs.push_back(passthrough_output(*src.spec, target, p));
    } catch (const error& err) {
      problems.push_back(err.what());
    }
  }
}

// Names written twice, and ggml block types bound for safetensors.
void check_outputs(const conversion_plan& plan, const layout_spec& target, std::vector<std::string>& problems) {
  std::unordered_map<std::string_view, std::size_t> seen;
  for (std::size_t i = 0; i < plan.outputs.size(); ++i) {
    auto [it, fresh] = seen.emplace(plan.outputs[i].spec.name, i);
    if (!fresh)
      problems.push_back("output tensor " + quote(plan.outputs[i].spec.name) + " would be written twice (from " +
                         plan.outputs[it->second].origin + " and from " + plan.outputs[i].origin + ")");
  }
  // Only a .gguf holds ggml block types; safetensors has no dtype for them.
  if (target.container == "gguf") return;
  // One problem per stored tensor, not one per expert cut from it.
  std::map<std::string, std::pair<std::string, std::size_t>> blocks;  // source -> (its type, outputs from it)
  std::vector<std::string> order;
  for (const auto& o : plan.outputs) {
    if (!o.spec.ggml_blocks) continue;
    const tensor_info& src = o.stored() ? *o.stored()->source->info : *o.assembled()->slots.front().front().source->info;
    auto [it, fresh] = blocks.try_emplace(src.name, storage_type_name(src), 0);
    if (fresh) order.push_back(src.name);
    ++it->second.second;
  }
  for (const auto& name : order) {
    const auto& [type, outputs] = blocks.at(name);
    problems.push_back(printable(name) + " holds " + type + " blocks, which only a .gguf can hold (layout '" + target.name +
                       "' writes safetensors, " + std::to_string(outputs) + " output tensor" + (outputs > 1 ? "s" : "") +
                       " from it; --dtype bf16 or f32 decodes them)");
  }
}

// Outputs in the order safetensors files list them, which is the order they are written.
void order_outputs(conversion_plan& plan) {
  std::vector<tensor_spec> specs;
  for (const auto& o : plan.outputs) specs.push_back(o.spec);
  sort_like_safetensors(specs);
  std::unordered_map<std::string, std::size_t> rank;
  for (std::size_t i = 0; i < specs.size(); ++i) rank[specs[i].name] = i;
  std::sort(plan.outputs.begin(), plan.outputs.end(),
            [&](const output_tensor& a, const output_tensor& b) { return rank[a.spec.name] < rank[b.spec.name]; });
  for (const auto& o : plan.outputs) plan.total_bytes += o.spec.nbytes();
}

}  // namespace

conversion_plan plan_conversion(const decoded_checkpoint& src, const layout_spec& target, const plan_options& options) {
  conversion_plan plan;
  plan.source = &src;
  plan.target = &target;
  std::vector<std::string> problems;
  plan_experts(src, target, options, plan, problems);
  plan_others(src, target, options, plan, problems);
  check_outputs(plan, target, problems);
  if (!problems.empty()) {
    std::string msg = src.ckpt->path() + ": the conversion to layout '" + target.name + "' is not possible:";
    for (const auto& p : problems) msg += "\n  " + p;
    throw error(msg);
  }
  order_outputs(plan);
  return plan;
}

}  // namespace moereg
