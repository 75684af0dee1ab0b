"""PyTorch side of bench/train-step-locca.ts: one training step of sigmoid + LocCa, timed.

The same math as our trainer (src/train/trainer.ts), written the way a PyTorch user would:
- transformers' SiglipModel (fp32, train mode, its default attention) from the run's config.json, with
  `return_loss=True`: big_vision's sigmoid loss on the batch;
- the LocCa decoder and loss of our reference, tools/reference/locca_goldens.py (`Decoder`, `locca_loss`):
  pre-LN, half the text depth, cross-attention to the vision tower's un-pooled post-LN tokens of each
  row's image, full-vocabulary cross-entropy averaged over each row's weighted positions, then over rows;
- total = sigmoid + LocCa; backward; global-norm clipping at 1; torch.optim.AdamW (β = 0.9, 0.95, eps 1e-8,
  weight decay 1e-4 on matrices only, lr 1e-3).
Decoder rows as ours: 3·batch rows of max_position_embeddings tokens (a caption per example, then one
referring expression and one grounded caption each), captions parallel with p = 0.5 (here: every other
caption), prefixes unweighted. Prints one JSON line: init_s, build_s, warmup_s, step_s, peak_rss_mb.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "reference"))
import common  # noqa: E402,F401  (torchvision import patch; sets 1 thread, reset below)
import torch  # noqa: E402
from transformers import SiglipConfig, SiglipModel  # noqa: E402

from locca_goldens import Decoder, locca_loss  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_batch(cfg: SiglipConfig, b: int, g: torch.Generator):
    tc, vc = cfg.text_config, cfg.vision_config
    V, T, R = tc.vocab_size, tc.max_position_embeddings, vc.image_size
    px = torch.randn((b, 3, R, R), generator=g)
    ids = torch.randint(3, V, (b, T), generator=g)
    S = 3 * b
    image = torch.arange(b).repeat(3)
    causal = torch.ones(S, dtype=torch.bool)
    causal[1:b:2] = False  # half the captions parallel
    prefix = torch.tensor([2] * b + [3] * (2 * b))  # "Cap:" / "ARef:" / "GCap:" tokens carry no loss
    lengths = torch.randint(8, T, (S,), generator=g)
    targets = torch.randint(3, V, (S, T), generator=g)
    pos = torch.arange(T)[None]
    weights = ((pos >= prefix[:, None]) & (pos < lengths[:, None])).float()
    dec_in = torch.cat([torch.full((S, 1), 2), targets[:, :-1]], 1)
    dec_in[~causal] = V  # the mask token, every position
    return px, ids, dec_in, targets, weights, causal, image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    with open(a.config) as f:
        cfg = SiglipConfig(**{k: v for k, v in json.load(f).items() if k not in ("architectures", "model_type")})
    t0 = time.perf_counter()
    model = SiglipModel(cfg).train()
    dec = Decoder(cfg.text_config, cfg.vision_config.hidden_size).train()
    init_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    params = [p for p in list(model.parameters()) + list(dec.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(
        [{"params": [p for p in params if p.ndim >= 2], "weight_decay": 1e-4}, {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
        lr=1e-3, betas=(0.9, 0.95), eps=1e-8,
    )
    build_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(1)
    px, ids, dec_in, targets, weights, causal, image = make_batch(cfg, a.batch, g)
    times = []
    for i in range(a.steps + 1):
        t0 = time.perf_counter()
        out = model(input_ids=ids, pixel_values=px, return_loss=True)
        mem = out.vision_model_output.last_hidden_state  # (B, P, D): post-LN, before the MAP head
        logits = dec(dec_in, mem[image], causal)  # (S, L, V)
        loc, _ = locca_loss(logits, targets, weights)
        total = out.loss + loc
        total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        print(f"train-step (PyTorch): step {i} {times[-1]:.2f} s, loss {total.item():.3f} (sigmoid {out.loss.item():.3f}, locca {loc.item():.3f})", file=sys.stderr)
        del out, mem, logits, loc, total
    print(json.dumps({
        "init_s": init_s, "build_s": build_s, "warmup_s": times[0], "step_s": times[1:], "median_s": statistics.median(times[1:]),
        "peak_rss_mb": peak_rss_mb(), "params": sum(p.numel() for p in params), "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
