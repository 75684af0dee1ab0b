"""Self-distillation (SILC) + masked prediction (TIPS) goldens: PyTorch float64 autograd oracle.

SigLIP 2 (§2.3) releases no code for these two losses; this is our reference of them, written from
the recipe notes (../shared/reference/training-recipe.md §3, §8.2 items 17-22) in plain torch:

- the student is the SigLIP image tower of tests/fixtures/models/fixres-f32 (transformers modules:
  patch conv, encoder, post-LN, MAP head), its embeddings written out here so that
  - local views (a smaller side) get the learned position grid resized by
    F.interpolate(bilinear, align_corners=False, antialias=True),
  - masked prediction replaces the masked patch embeddings by one learned mask token *before* the
    position embedding is added;
- DINO projection heads: fc1 -> GELU(erf) -> fc2 -> GELU -> fc3 -> z/(|z|+1e-8) -> z @ (W/(|W_row|+1e-8))^T,
  separate heads for the image-level (sd_head) and per-patch (mp_head) terms;
- teacher = separate values of the same tower and heads (an EMA teacher that has drifted from the
  student), no gradient; P_t = softmax((h_t(global) - c) / tau_t) with a running centre c;
- L_SD = mean over images and local views of -sum_k P_t log softmax(h_s(local) / tau_s);
  L_MP = the same per patch (student: masked global view; teacher: the global view), averaged over
  the masked patches only;
- total = sigmoid (SiglipModel return_loss on the original images) + w * (1 * L_SD + 0.25 * L_MP);
- after the step: EMA teacher theta_t <- mu theta_t + (1 - mu) theta_s, centre c <- m c + (1 - m) mean(h_t).

Views, masks, teacher values and centres are explicit arrays here (the TypeScript side tests its crop
sampler separately; one crop+resize case is checked against F.interpolate below). Computed in float64;
writes tests/fixtures/goldens/distill-grads.{safetensors,json}.
"""
import common  # noqa: F401  (must be first: torch set-up)

import json
import math
import os

import torch
import transformers
from safetensors.torch import save_file
from torch import nn
from torch.nn import functional as F
from transformers import SiglipModel

from common import FIXTURES, GOLDENS

N_IMG = 3  # images in the batch
T = 64  # text length
V = 2  # local views per image
LOCAL = 16  # local view side (grid 2x2; the model's 32 px / patch 8 gives a 4x4 grid)
HEAD = dict(hidden=12, bottleneck=6, out=10)
TAU_S, TAU_T = 0.1, 0.04
SIZE_FACTOR = 0.25
EMA, CENTER_M = 0.996, 0.9
MASKED = [[0, 2, 5, 7, 8, 10, 13, 15], [1, 3, 4, 6, 9, 11, 12, 14], [0, 1, 2, 3, 4, 5, 6, 7]]  # 8 of 16 each


def f32(t):
    """Round to float32-representable values (both sides then use the same numbers)."""
    return t.float().double()


class Head(nn.Module):
    def __init__(self, d, hidden, bottleneck, out):
        super().__init__()
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, bottleneck)
        self.last_layer = nn.Linear(bottleneck, out, bias=False)

    def forward(self, x):
        z = self.fc3(F.gelu(self.fc2(F.gelu(self.fc1(x)))))
        z = z / (z.norm(dim=-1, keepdim=True) + 1e-8)
        w = self.last_layer.weight
        w = w / (w.norm(dim=-1, keepdim=True) + 1e-8)
        return z @ w.T


def embed(vm, px, mask=None, token=None):
    e = vm.embeddings
    x = e.patch_embedding(px)  # (B, D, g, g)
    b, d, gh, gw = x.shape
    x = x.flatten(2).transpose(1, 2)  # (B, g*g, D)
    if mask is not None:
        m = mask[..., None]
        x = x * (1 - m) + m * token
    pos = e.position_embedding.weight  # (G*G, D)
    g = int(round(math.sqrt(pos.shape[0])))
    if gh != g:
        grid = pos.reshape(1, g, g, d).permute(0, 3, 1, 2)
        pos = F.interpolate(grid, size=(gh, gw), mode="bilinear", align_corners=False, antialias=True)
        pos = pos.permute(0, 2, 3, 1).reshape(gh * gw, d)
    return x + pos


def tower(vm, emb):
    last = vm.post_layernorm(vm.encoder(inputs_embeds=emb).last_hidden_state)
    return last, vm.head(last)


def soft_ce(logits, target, tau):
    return -(target * torch.log_softmax(logits / tau, -1)).sum(-1)


def main():
    model_dir = os.path.join(FIXTURES, "models", "fixres-f32")
    model = SiglipModel.from_pretrained(model_dir, attn_implementation="eager").double().eval()
    vc = model.config.vision_config
    D = vc.hidden_size
    grid = vc.image_size // vc.patch_size
    P = grid * grid
    K = HEAD["out"]
    torch.manual_seed(11)
    heads = nn.ModuleDict({"sd_head": Head(D, **HEAD), "mp_head": Head(D, **HEAD)}).double()
    token = nn.Parameter(f32(torch.randn(D, dtype=torch.float64) * 0.3))
    with torch.no_grad():
        for p in heads.parameters():
            p.copy_(f32(torch.randn_like(p) * 0.3))
    # the teacher: the student's tower and heads, drifted
    teacher = SiglipModel.from_pretrained(model_dir, attn_implementation="eager").double().eval().vision_model
    t_heads = nn.ModuleDict({"sd_head": Head(D, **HEAD), "mp_head": Head(D, **HEAD)}).double()
    t_heads.load_state_dict(heads.state_dict())
    with torch.no_grad():
        for p in list(teacher.parameters()) + list(t_heads.parameters()):
            p.add_(torch.randn_like(p) * 0.05)
            p.copy_(f32(p))

    g = torch.Generator().manual_seed(20261203)
    px = torch.randn((N_IMG, 3, vc.image_size, vc.image_size), generator=g, dtype=torch.float32)
    ids = torch.zeros((N_IMG, T), dtype=torch.int64)
    for i, n in enumerate([5, 8, 11]):
        ids[i, :n] = torch.randint(2, 1024, (n,), generator=g)
        ids[i, n] = 1
    glob = torch.randn((N_IMG, 3, vc.image_size, vc.image_size), generator=g, dtype=torch.float32)
    local = torch.randn((N_IMG * V, 3, LOCAL, LOCAL), generator=g, dtype=torch.float32)
    mask = torch.zeros((N_IMG, P), dtype=torch.float64)
    for i, rows in enumerate(MASKED):
        mask[i, rows] = 1.0
    c_sd = f32(torch.randn(K, generator=g, dtype=torch.float64) * 0.1)
    c_mp = f32(torch.randn(K, generator=g, dtype=torch.float64) * 0.1)

    # teacher: the global view, no gradient
    with torch.no_grad():
        t_last, t_pooled = tower(teacher, embed(teacher, glob.double()))
        t_sd = t_heads["sd_head"](t_pooled)  # (n, K)
        t_mp = t_heads["mp_head"](t_last)  # (n, P, K)
        p_sd = torch.softmax((t_sd - c_sd) / TAU_T, -1)
        p_mp = torch.softmax((t_mp - c_mp) / TAU_T, -1)

    out = model(input_ids=ids, pixel_values=px.double(), return_loss=True)
    vm = model.vision_model
    _, s_pooled = tower(vm, embed(vm, local.double()))  # (n*V, D)
    s_sd = heads["sd_head"](s_pooled).reshape(N_IMG, V, K)
    sd = soft_ce(s_sd, p_sd[:, None], TAU_S).mean()
    s_last, _ = tower(vm, embed(vm, glob.double(), mask, token))
    ce = soft_ce(heads["mp_head"](s_last), p_mp, TAU_S)  # (n, P)
    mp = (ce * mask).sum() / mask.sum()
    total = out.loss + SIZE_FACTOR * (1.0 * sd + 0.25 * mp)
    total.backward()

    # the updates after the step (from the values before it)
    ema = {}
    student_vals = dict(vm.named_parameters())
    for name, p in teacher.named_parameters():
        ema[f"ema.vision_model.{name}"] = (EMA * p + (1 - EMA) * student_vals[name]).detach().float()
    sh = dict(heads.named_parameters())
    for name, p in t_heads.named_parameters():
        ema[f"ema.distill.{name}"] = (EMA * p + (1 - EMA) * sh[name]).detach().float()

    # one crop + resize (the view sampler's resampling): rows 3..15, columns 5..24, flipped, to 16x16
    crop_src = torch.randn((3, 32, 32), generator=g, dtype=torch.float32)
    crop = F.interpolate(crop_src.double()[None, :, 3:16, 5:25], size=(16, 16), mode="bilinear", align_corners=False, antialias=True)[0].flip(-1)

    tensors = {
        "inputs.pixel_values": px.contiguous(),
        "inputs.input_ids": ids.contiguous(),
        "inputs.mp_global_pixels": glob.contiguous(),
        "inputs.sd_local_pixels": local.contiguous(),
        "inputs.mp_mask": mask.float().contiguous(),
        "center.sd": c_sd.float(),
        "center.mp": c_mp.float(),
        "teacher_sd": t_sd.float().contiguous(),
        "teacher_mp": t_mp.float().contiguous(),
        "sd_teacher_probs": p_sd.float().contiguous(),
        "mp_teacher_probs": p_mp.float().contiguous(),
        "center_after.sd": (CENTER_M * c_sd + (1 - CENTER_M) * t_sd.mean(0)).float(),
        "center_after.mp": (CENTER_M * c_mp + (1 - CENTER_M) * t_mp.reshape(-1, K).mean(0)).float(),
        "loss": total.detach().reshape(1),
        "sigmoid_loss": out.loss.detach().reshape(1),
        "sd_loss": sd.detach().reshape(1),
        "mp_loss": mp.detach().reshape(1),
        "crop.src": crop_src.contiguous(),
        "crop.out": crop.float().contiguous(),
        "distill.mask_token": token.detach().float(),
        **ema,
    }
    names = []
    for name, p in model.named_parameters():
        tensors[f"grad.{name}"] = p.grad.detach().float().contiguous()
        names.append(name)
    tensors["grad.distill.mask_token"] = token.grad.detach().float()
    names.append("distill.mask_token")
    for name, p in heads.named_parameters():
        tensors[f"distill.{name}"] = p.detach().float().contiguous()
        tensors[f"grad.distill.{name}"] = p.grad.detach().float().contiguous()
        names.append(f"distill.{name}")
    for name, p in teacher.named_parameters():
        tensors[f"teacher.vision_model.{name}"] = p.detach().float().contiguous()
    for name, p in t_heads.named_parameters():
        tensors[f"teacher.distill.{name}"] = p.detach().float().contiguous()
    save_file(tensors, os.path.join(GOLDENS, "distill-grads.safetensors"))
    manifest = {
        "model_dir": "tests/fixtures/models/fixres-f32",
        "images": N_IMG, "local_views": V, "local_size": LOCAL, "head": HEAD,
        "student_temp": TAU_S, "teacher_temp": TAU_T, "size_factor": SIZE_FACTOR,
        "ema_momentum": EMA, "center_momentum": CENTER_M,
        "masked": MASKED,
        "loss": total.item(), "sigmoid_loss": out.loss.item(), "sd_loss": sd.item(), "mp_loss": mp.item(),
        "loss_definition": "sigmoid + w * (1 * SD + 0.25 * MP); SD, MP: DINO soft cross-entropy vs centred teacher probabilities",
        "precision": "float64 compute; stored as float32 (losses as float64)",
        "parameters": names,
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
    }
    with open(os.path.join(GOLDENS, "distill-grads.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"distill-grads: loss {total.item():.10f} (sigmoid {out.loss.item():.10f}, sd {sd.item():.10f}, mp {mp.item():.10f}), {len(names)} gradients")


if __name__ == "__main__":
    main()
