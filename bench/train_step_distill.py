"""PyTorch side of bench/train-step-distill.ts: one SigLIP 2 training step with self-distillation and
masked prediction on (sigmoid loss on the original image, 1 global + V local views, EMA teacher, DINO
heads with centring, 50% mask token, AdamW, EMA update), same sizes as ours, fp32, eager.

  python bench/train_step_distill.py --config CONFIG.json --batch 8 --views 8 --local 24 --head 256,64,1024 --threads 2 --steps 4
prints one JSON line: seconds per step (median, after one warm-up step), peak RSS.
"""
import argparse
import copy
import json
import math
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "reference"))
import common  # noqa: E402,F401  (torchvision import patch)
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from transformers import SiglipConfig, SiglipModel  # noqa: E402


class Head(nn.Module):
    def __init__(self, d, hidden, bottleneck, out):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(d, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, bottleneck)
        self.last_layer = nn.Linear(bottleneck, out, bias=False)

    def forward(self, x):
        z = F.normalize(self.fc3(F.gelu(self.fc2(F.gelu(self.fc1(x))))), dim=-1, eps=1e-8)
        return z @ F.normalize(self.last_layer.weight, dim=-1, eps=1e-8).T


def embed(vm, px, mask=None, token=None):
    e = vm.embeddings
    x = e.patch_embedding(px)
    b, d, gh, gw = x.shape
    x = x.flatten(2).transpose(1, 2)
    if mask is not None:
        x = x * (1 - mask[..., None]) + mask[..., None] * token
    pos = e.position_embedding.weight
    g = int(round(math.sqrt(pos.shape[0])))
    if gh != g:
        pos = F.interpolate(pos.reshape(1, g, g, d).permute(0, 3, 1, 2), size=(gh, gw), mode="bilinear", align_corners=False, antialias=True)
        pos = pos.permute(0, 2, 3, 1).reshape(gh * gw, d)
    return x + pos


def tower(vm, emb):
    last = vm.post_layernorm(vm.encoder(inputs_embeds=emb).last_hidden_state)
    return last, vm.head(last)


def crop(img, size, scale, gen):
    _, h, w = img.shape
    for _ in range(10):
        area = h * w * (scale[0] + (scale[1] - scale[0]) * torch.rand(1, generator=gen).item())
        ar = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * torch.rand(1, generator=gen).item())
        cw, ch = round(math.sqrt(area * ar)), round(math.sqrt(area / ar))
        if 0 < cw <= w and 0 < ch <= h:
            t = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
            l = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
            break
    else:
        t, l, ch, cw = 0, 0, h, w
    out = F.interpolate(img[None, :, t:t + ch, l:l + cw], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return out.flip(-1) if torch.rand(1, generator=gen).item() < 0.5 else out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--local", type=int, default=24)
    ap.add_argument("--head", default="256,64,1024")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = SiglipConfig.from_dict(json.load(open(a.config)))
    model = SiglipModel(cfg).float().train()
    vc = cfg.vision_config
    d, n, V = vc.hidden_size, a.batch, a.views
    hidden, bottleneck, out = (int(x) for x in a.head.split(","))
    heads = nn.ModuleDict({"sd": Head(d, hidden, bottleneck, out), "mp": Head(d, hidden, bottleneck, out)})
    token = nn.Parameter(torch.randn(d) * 0.02)
    teacher = copy.deepcopy(model.vision_model).requires_grad_(False)
    t_heads = copy.deepcopy(heads).requires_grad_(False)
    params = list(model.parameters()) + list(heads.parameters()) + [token]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    c_sd, c_mp = torch.zeros(out), torch.zeros(out)
    g = torch.Generator().manual_seed(1)
    R, P = vc.image_size, (vc.image_size // vc.patch_size) ** 2
    px = torch.randn(n, 3, R, R, generator=g)
    ids = torch.randint(2, cfg.text_config.vocab_size, (n, cfg.text_config.max_position_embeddings), generator=g)

    def step():
        nonlocal c_sd, c_mp
        glob = torch.stack([crop(px[i], R, (0.4, 1.0), g) for i in range(n)])
        local = torch.stack([crop(px[i], a.local, (0.05, 0.4), g) for i in range(n) for _ in range(V)])
        mask = torch.zeros(n, P)
        for i in range(n):
            mask[i, torch.randperm(P, generator=g)[: round(0.5 * P)]] = 1
        with torch.no_grad():
            t_last, t_pooled = tower(teacher, embed(teacher, glob))
            t_sd, t_mp = t_heads["sd"](t_pooled), t_heads["mp"](t_last)
            p_sd, p_mp = torch.softmax((t_sd - c_sd) / 0.04, -1), torch.softmax((t_mp - c_mp) / 0.04, -1)
        o = model(input_ids=ids, pixel_values=px, return_loss=True)
        vm = model.vision_model
        _, s_pooled = tower(vm, embed(vm, local))
        sd = -(p_sd[:, None] * torch.log_softmax(heads["sd"](s_pooled).reshape(n, V, out) / 0.1, -1)).sum(-1).mean()
        s_last, _ = tower(vm, embed(vm, glob, mask, token))
        ce = -(p_mp * torch.log_softmax(heads["mp"](s_last) / 0.1, -1)).sum(-1)
        mp = (ce * mask).sum() / mask.sum()
        loss = o.loss + 0.25 * (sd + 0.25 * mp)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            for tp, sp in zip(list(teacher.parameters()) + list(t_heads.parameters()), list(vm.parameters()) + list(heads.parameters())):
                tp.mul_(0.996).add_(sp, alpha=0.004)
            c_sd = 0.9 * c_sd + 0.1 * t_sd.mean(0)
            c_mp = 0.9 * c_mp + 0.1 * t_mp.reshape(-1, out).mean(0)
        return loss.item()

    step()  # warm-up
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    secs = sorted(times)[len(times) // 2]  # median, as ours
    print(json.dumps({"s_per_step": secs, "loss": loss, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
