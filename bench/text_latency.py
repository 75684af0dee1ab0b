"""The reference side of bench/text-latency.ts: transformers + PyTorch fp32, one text per call.

A long-lived child (so that the two sides can be interleaved in one run, sharing the machine's
load): reads one JSON request per stdin line and answers one JSON line per request.

  {"mode": "tower", "n": N}    N runs of get_text_features on one row of 64 token ids
  {"mode": "query", "n": N}    N queries: tokenizer (max_length padding) + get_text_features + L2 norm
  {"mode": "quit"}

Answer: {"wall_ms": [...], "cpu_ms": [...]} (cpu: process CPU time, every thread).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "reference"))
import common  # noqa: E402,F401  (torchvision import patch)
import torch  # noqa: E402

QUERIES = ["a red car parked in the street", "two dogs playing on a beach", "a bowl of ramen", "sunset over the mountains",
           "a cat sleeping on a laptop keyboard", "children at a birthday party", "snow on a pine forest", "a man riding a bicycle"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from transformers import AutoModel, AutoTokenizer
    model = AutoModel.from_pretrained(a.model, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(a.model)
    T = model.config.text_config.max_position_embeddings
    ids = torch.tensor([[(i * 7919) % 256000 for i in range(T)]])
    q = 0

    def tower():
        model.get_text_features(input_ids=ids)

    def query():
        nonlocal q
        text = QUERIES[q % len(QUERIES)]
        q += 1
        x = tok([text.lower()], padding="max_length", max_length=T, truncation=True, return_tensors="pt")
        e = model.get_text_features(input_ids=x["input_ids"]).pooler_output
        return e / e.norm(dim=-1, keepdim=True)

    with torch.inference_mode():
        for _ in range(2):
            tower()
            query()
        print(json.dumps({"ready": True, "torch": torch.__version__}), flush=True)
        for line in sys.stdin:
            req = json.loads(line)
            if req["mode"] == "quit":
                break
            fn = tower if req["mode"] == "tower" else query
            wall, cpu = [], []
            for _ in range(req["n"]):
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                wall.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
            print(json.dumps({"wall_ms": wall, "cpu_ms": cpu}), flush=True)


if __name__ == "__main__":
    main()
