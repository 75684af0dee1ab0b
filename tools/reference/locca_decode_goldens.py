"""LocCa decoding goldens: greedy and beam search on the reference decoder (locca_goldens.Decoder).

The decoder weights are the training golden's (tests/fixtures/goldens/locca-decoder.safetensors), the
image tokens the fixres-f32 vision tower's post-LN last_hidden_state for the golden pixels
(inputs.pixel_values of locca-grads.safetensors), so that the TypeScript side feeds the same inputs.
Prompts are explicit id lists (the tokenizer is tested separately). Two weight settings: "plain", and
"eos" with lm_head.bias[EOS] raised by EOS_BIAS so that hypotheses end with EOS mid-sequence.

The algorithm (src/tasks/caption.ts says the same): a row is [BOS, prompt, generated]; at most
L - 1 - len(prompt) generated tokens are fed back and one more predicted (or max_tokens); per step,
each live beam's log-softmax (float64) gives candidates score + log p(v) for its best 2B tokens;
candidates ranked by score (ties: lower beam, then lower token); an EOS candidate of rank < B is a
finished hypothesis, the others refill B live beams in rank order; stop at B finished hypotheses or
when nothing can be fed; the result maximises logprob / tokens^alpha. B = 1 is greedy.
Writes tests/fixtures/goldens/locca-decode.json. Computed in float64.
"""
import common  # noqa: F401  (must be first: torch set-up)

import json
import os

import torch
from safetensors.torch import load_file
from transformers import SiglipModel

from common import FIXTURES, GOLDENS
from locca_goldens import Decoder

BOS, EOS = 2, 1
EOS_BIAS = 3.0
PROMPTS = [[5, 17], [300], [12, 40, 7, 99], []]  # per image 0..3
CASES = [  # (weights, beam, alpha, max_tokens)
    ("plain", 1, 1.0, None),
    ("plain", 3, 1.0, None),
    ("plain", 4, 0.6, 9),
    ("eos", 1, 1.0, None),
    ("eos", 3, 1.0, None),
    ("eos", 4, 0.0, None),
]


def decode(dec, mem, prompts, beam, alpha, length, max_tokens):
    states = []
    for image, prompt in enumerate(prompts):
        room = length - 1 - len(prompt)
        cap = room + 1 if max_tokens is None else min(room + 1, max_tokens)
        states.append({"prompt": prompt, "image": image, "cap": cap, "alive": [([], 0.0)], "done": []})
    margin = float("inf")
    while True:
        for st in states:
            if st["alive"] and len(st["alive"][0][0]) >= st["cap"]:
                st["done"] += [(t, s, False) for t, s in st["alive"]]
                st["alive"] = []
        live = [st for st in states if st["alive"]]
        if not live:
            break
        rows, images, last = [], [], []
        for st in live:
            for toks, _ in st["alive"]:
                ids = [BOS] + st["prompt"] + toks
                last.append(len(ids) - 1)
                rows.append(ids + [0] * (length - len(ids)))
                images.append(st["image"])
        ids = torch.tensor(rows, dtype=torch.int64)
        with torch.no_grad():
            logits = dec(ids, mem[torch.tensor(images)], torch.ones(len(rows), dtype=torch.bool))
        lp_all = torch.log_softmax(logits[torch.arange(len(rows)), torch.tensor(last)], -1)  # (S, V) float64
        r = 0
        for st in live:
            cands = []
            for bi, (toks, score) in enumerate(st["alive"]):
                lp = lp_all[r + bi]
                order = sorted(range(lp.shape[0]), key=lambda v: (-lp[v].item(), v))[: 2 * beam]
                cands += [(score + lp[v].item(), bi, v) for v in order]
            r += len(st["alive"])
            cands.sort(key=lambda c: (-c[0], c[1], c[2]))
            nxt = []
            for rank, (score, bi, v) in enumerate(cands):
                if len(nxt) == beam:
                    margin = min(margin, cands[rank - 1][0] - score)
                    break
                toks = st["alive"][bi][0] + [v]
                if v == EOS:
                    if rank < beam:
                        st["done"].append((toks, score, True))
                else:
                    nxt.append((toks, score))
            st["alive"] = [] if len(st["done"]) >= beam else nxt
    out = []
    for st in states:
        best = max(st["done"], key=lambda d: d[1] / max(1, len(d[0])) ** alpha)  # first of equals, as the TS side
        out.append({"tokens": best[0], "logProb": best[1], "finished": best[2]})
    return out, margin


def main():
    model_dir = os.path.join(FIXTURES, "models", "fixres-f32")
    model = SiglipModel.from_pretrained(model_dir, attn_implementation="eager").double().eval()
    tc = model.config.text_config
    px = load_file(os.path.join(GOLDENS, "locca-grads.safetensors"))["inputs.pixel_values"]
    with torch.no_grad():
        mem = model.vision_model(pixel_values=px.double()).last_hidden_state  # (N, P, Dv)
    weights = load_file(os.path.join(GOLDENS, "locca-decoder.safetensors"))
    cases = []
    for setting, beam, alpha, max_tokens in CASES:
        dec = Decoder(tc, model.config.vision_config.hidden_size).double().eval()
        state = {k[len("decoder."):]: v.double() for k, v in weights.items()}
        if setting == "eos":
            state["lm_head.bias"] = state["lm_head.bias"].clone()
            state["lm_head.bias"][EOS] += EOS_BIAS
        dec.load_state_dict(state)
        results, margin = decode(dec, mem, PROMPTS, beam, alpha, tc.max_position_embeddings, max_tokens)
        cases.append({"weights": setting, "beam": beam, "lengthPenalty": alpha, "maxTokens": max_tokens, "results": results, "margin": margin})
        lens = [len(r["tokens"]) for r in results]
        print(f"{setting} beam {beam} alpha {alpha} max {max_tokens}: lengths {lens}, finished {[r['finished'] for r in results]}, smallest rank margin {margin:.2e}")
    golden = {
        "bos": BOS, "eos": EOS, "eos_bias": EOS_BIAS, "prompts": PROMPTS, "length": tc.max_position_embeddings,
        "memory": "fixres-f32 vision_model last_hidden_state of locca-grads inputs.pixel_values",
        "precision": "float64", "cases": cases,
    }
    with open(os.path.join(GOLDENS, "locca-decode.json"), "w") as f:
        json.dump(golden, f)
        f.write("\n")


if __name__ == "__main__":
    main()
