// SPDX-License-Identifier: Apache-2.0
// test_cuda_wgmma.cpp - bf16 experts on the grouped wgmma GEMM (bf16_grouped_experts.h), against
// the float64 reference: both tile widths (128 and 256 output columns), tiles of one expert
// split by rows and by columns (<= 64 rows), experts with no rows, several m tiles, a shared
// expert inside the grouped launches or beside them, and when the layer chooses it.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "cuda_test_support.h"

namespace moereg::test::cuda {
namespace {

bool ran_wgmma(const std::string& json) { return json.find("\"last_tiles\":\"wgmma_bf16") != std::string::npos; }

// Skewed routing (expert 0 takes a third of the tokens): at T = 611, K = 4 and 16 experts,
// expert 0 spans two m tiles (the second of ~76 rows: split by rows) and the others a full
// tile and a short one (split by columns); at T = 1 and 5 most experts have no rows.
TEST(CudaWgmma, MatchesTheReferenceAtEverySize) {
  ASSERT_NE(backend_api(), nullptr);
  random_layer A(16, 256, 192, 4, 0, false, 31);  // gate/up 384 columns (128-wide tiles), down 256 (256-wide)
  random_layer B(8, 384, 128, 2, 0, false, 32);   // gate/up 256 (256-wide), down 384 (128-wide)
  set_option("tiles", "wgmma");
  for (random_layer* L : {&A, &B})
    for (int T : {1, 5, 64, 611}) {
      std::string json;
      const double err = run_random(*L, T, 100 + T, T % 2 == 1, &json);
      EXPECT_LE(err, 1e-2) << "H=" << L->H << " I=" << L->I << " T=" << T;
      EXPECT_TRUE(ran_wgmma(json)) << json;
      std::printf("[ wgmma    ] H=%d I=%d T=%d rel L2 %.3e\n", L->H, L->I, T, err);
    }
  // Balanced routing: every expert exactly 128 rows (one full tile) at T = 512.
  std::string json;
  EXPECT_LE(run_random(B, 512, 7, false, &json, /*balanced=*/true), 1e-2);
  EXPECT_TRUE(ran_wgmma(json)) << json;
  clear_option("tiles");
}

// wgmma_silu=fused (SiLU(gate) * up in the gate/up GEMM's epilogue, from the 128 gate and
// matching 128 up rows a tile takes) and wgmma_gather=on (the gate/up GEMM reads x's rows
// through the routing's index, no sorted copy) give the bits of the separate passes at every
// size: tiles split by rows and by columns, experts with no rows, a shared expert inside the
// launches (its rows every token). Where I is not a multiple of 128 the SiLU stays a pass.
TEST(CudaWgmma, FusedSiluAndGatheredRowsGiveTheSeparatePassesBits) {
  ASSERT_NE(backend_api(), nullptr);
  random_layer A(16, 256, 256, 4, 0, false, 36);   // gate/up 512 columns: two 256-wide tiles
  random_layer S(8, 256, 128, 2, 128, true, 37);   // a gated shared expert as one more expert
  random_layer N(8, 384, 192, 2, 0, false, 38);    // I = 192: 128-wide gate/up tiles, no fusion
  for (random_layer* L : {&A, &S, &N}) {
    set_option("tiles", "wgmma");
    handle separate = create(L->view(), nullptr);
    set_option("wgmma_silu", "fused");
    handle fused = create(L->view(), nullptr);
    set_option("wgmma_gather", "on");
    handle both = create(L->view(), nullptr);
    clear_option("wgmma_silu");
    handle gathered = create(L->view(), nullptr);
    clear_option("wgmma_gather");
    clear_option("tiles");
    ASSERT_TRUE(separate && fused && both && gathered);
    for (int T : {1, 5, 64, 611}) {
      random_tokens r(T, L->H, L->E, L->K, 300 + T, T % 2 == 1);
      const std::vector<float> want = forward(separate.get(), r, T, L->H, L->K);
      for (auto [h, what] : {std::pair{fused.get(), "wgmma_silu=fused"}, std::pair{gathered.get(), "wgmma_gather=on"},
                             std::pair{both.get(), "both"}}) {
        EXPECT_EQ(max_rel_diff(forward(h, r, T, L->H, L->K), want), 0.0)
            << what << " I=" << L->I << " Is=" << L->Is << " T=" << T;
        const std::string json = describe(h);
        EXPECT_TRUE(ran_wgmma(json)) << json;
        EXPECT_EQ(json.find("with the SiLU") != std::string::npos, h != gathered.get() && L->I % 128 == 0) << what << json;
        EXPECT_EQ(json.find("gathering x's rows") != std::string::npos, h != fused.get()) << what << json;
      }
    }
  }
}

// A shared expert of the routed size runs as one more expert of the grouped launches (gated or
// not); of another size, on the kernels after them.
TEST(CudaWgmma, SharedExpertInsideOrBesideTheGroupedLaunches) {
  ASSERT_NE(backend_api(), nullptr);
  random_layer G(8, 256, 128, 2, 128, true, 33);
  random_layer U(8, 256, 128, 2, 128, false, 34);
  random_layer D(8, 256, 128, 2, 64, true, 35);
  set_option("tiles", "wgmma");
  for (random_layer* L : {&G, &U, &D})
    for (int T : {3, 300}) {
      std::string json;
      const double err = run_random(*L, T, 200 + T, T == 3, &json);
      EXPECT_LE(err, 1e-2) << "Is=" << L->Is << " gate=" << L->gate << " T=" << T;
      EXPECT_TRUE(ran_wgmma(json)) << json;
      EXPECT_EQ(json.find("the shared expert as one more expert") != std::string::npos, L->Is == L->I) << json;
      std::printf("[ wgmma    ] shared Is=%d gate=%d T=%d rel L2 %.3e\n", L->Is, L->gate, T, err);
    }
  clear_option("tiles");
}

// wgmma=auto (the default): experts past 16 MiB of gate/up weights, passes of two or more tokens
// that cuBLAS does not take (under 64 rows per hit expert for such experts); one token, small
// experts, graphs=on, wgmma=off and sizes that do not fit keep the earlier paths, and describe
// says which.
// wgmma=auto (session 26, from the H200's table): passes of 32 or more rows per expert on
// average that cuBLAS does not take, whatever the experts' size.
TEST(CudaWgmma, ChosenFromThirtyTwoRowsPerExpertBelowTheCublasSizes) {
  ASSERT_NE(backend_api(), nullptr);
  clear_option("tiles");
  clear_option("wgmma");
  random_layer L(2, 2048, 2304, 1, 0, false, 36);  // 18.9 MB of gate/up weights an expert
  std::string json;
  EXPECT_LE(run_random(L, 100, 1, true, &json), 1e-2);  // 50 rows per expert
  EXPECT_TRUE(ran_wgmma(json)) << json;
  EXPECT_NE(json.find("grouped wgmma bf16 GEMM (one launch a projection) for passes of 32 or more rows per expert on average"),
            std::string::npos)
      << json;
  EXPECT_LE(run_random(L, 40, 2, true, &json), 1e-2);  // 20 rows per expert: the kernels
  EXPECT_FALSE(ran_wgmma(json)) << json;
  EXPECT_LE(run_random(L, 1, 2, true, &json), 1e-2);  // one token: the kernels
  EXPECT_FALSE(ran_wgmma(json)) << json;
  EXPECT_LE(run_random(L, 160, 3, true, &json), 1e-2);  // 80 rows per expert: cuBLAS where it loads
  if (json.find("\"gemm_large\":\"cuBLAS") != std::string::npos) {
    EXPECT_FALSE(ran_wgmma(json)) << json;
  }
  set_option("graphs", "on");  // decode passes stay on the kernels a graph captures
  EXPECT_LE(run_random(L, 100, 1, true, &json), 1e-2);
  EXPECT_FALSE(ran_wgmma(json)) << json;
  EXPECT_NE(json.find("graphs=on keeps those passes on the captured kernels"), std::string::npos) << json;
  clear_option("graphs");
  set_option("wgmma", "off");
  EXPECT_LE(run_random(L, 100, 1, true, &json), 1e-2);
  EXPECT_FALSE(ran_wgmma(json)) << json;
  EXPECT_NE(json.find("grouped wgmma GEMM off (wgmma=off)"), std::string::npos) << json;
  EXPECT_NE(json.find("\"wgmma\":\"off\""), std::string::npos) << json;
  clear_option("wgmma");
  // Small experts too (qwen3's 6 MiB ones ran 0.43 against 0.50 ms at T = 1024 on the H200).
  random_layer small(8, 256, 128, 2, 0, false, 39);
  EXPECT_LE(run_random(small, 128, 4, false, &json), 1e-2);  // 32 rows per expert
  EXPECT_TRUE(ran_wgmma(json)) << json;
  EXPECT_LE(run_random(small, 40, 4, false, &json), 1e-2);  // 10
  EXPECT_FALSE(ran_wgmma(json)) << json;
  random_layer odd(2, 2056, 2304, 1, 0, false, 37);  // hidden not a multiple of 128
  EXPECT_LE(run_random(odd, 100, 3, false, &json), 1e-2);
  EXPECT_FALSE(ran_wgmma(json)) << json;
  EXPECT_NE(json.find("grouped wgmma GEMM not used: hidden 2056"), std::string::npos) << json;
}

TEST(CudaWgmma, ForcedOnSizesItCannotRunIsRefusedByName) {
  ASSERT_NE(backend_api(), nullptr);
  random_layer odd(8, 264, 136, 2, 0, false, 38);
  set_option("tiles", "wgmma");
  std::string err;
  handle h = create(odd.view(), nullptr, &err);
  clear_option("tiles");
  EXPECT_FALSE(h);
  EXPECT_NE(err.find("tiles=wgmma"), std::string::npos) << err;
  EXPECT_NE(err.find("hidden 264"), std::string::npos) << err;
  set_option("wgmma", "always");
  h = create(odd.view(), nullptr, &err);
  clear_option("wgmma");
  EXPECT_FALSE(h);
  EXPECT_NE(err.find("wgmma"), std::string::npos) << err;
  EXPECT_NE(err.find("auto"), std::string::npos) << err;
}

}  // namespace
}  // namespace moereg::test::cuda
