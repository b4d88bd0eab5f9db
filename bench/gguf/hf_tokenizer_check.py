# SPDX-License-Identifier: Apache-2.0
"""Do transformers' tokenizers read the tokenizer files moereg writes out of a .gguf, and
tokenize as llama.cpp does with the original .gguf? On a host with transformers (the GPU
machine), over a folder written by

    MOEREG_TOKENIZER_DUMP=DIR build/bin/moereg_tests --gtest_filter='LlamaCpp.TokenizesTheSame*'

(one sub-folder per llama.cpp vocab: tokenizer.json / tokenizer.model / tokenizer_config.json
as moereg writes them, and llama.cpp's tokens of DIR/text.txt). usage: hf_tokenizer_check.py DIR"""
import os
import sys

from transformers import AutoTokenizer, PreTrainedTokenizerFast


def main(root: str) -> int:
    text = open(os.path.join(root, "text.txt"), encoding="utf-8").read()
    rows, bad = [], 0
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        if not os.path.isdir(d):
            continue
        want = [int(t) for t in open(os.path.join(d, "llamacpp_tokens.txt")).read().split("\n")[1].split()]
        try:
            if os.path.exists(os.path.join(d, "tokenizer.json")):
                tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"))
            else:
                tok = AutoTokenizer.from_pretrained(d)
            got = tok.encode(text, add_special_tokens=False)
            # llama.cpp added BOS where the vocab says so; compare the text's own tokens.
            body = want[1:] if want and got and want[0] != got[0] and want[1:2] == got[:1] else want
            same = got == body
            first = next((i for i, (a, b) in enumerate(zip(got, body)) if a != b), min(len(got), len(body)))
            rows.append((name, type(tok).__name__, len(body), len(got), "same" if same else f"differs at {first}"))
            bad += not same
        except Exception as e:  # a file transformers refuses is a finding, not a crash
            rows.append((name, "-", len(want), 0, f"load failed: {type(e).__name__}: {str(e)[:80]}"))
            bad += 1
    print(f"{'vocab':<22} {'tokenizer class':<26} {'llama.cpp':>9} {'transformers':>12}  result")
    for r in rows:
        print(f"{r[0]:<22} {r[1]:<26} {r[2]:>9} {r[3]:>12}  {r[4]}")
    print(f"{len(rows) - bad} of {len(rows)} tokenize as llama.cpp does")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
