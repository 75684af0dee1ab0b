"""LocCa goldens (PyTorch autograd oracle) for the TypeScript decoder, LocCa loss and their gradients.

The SigLIP 2 paper (§2.2) adds a LocCa decoder beside the sigmoid loss and releases neither its code nor
its weights; this file is our reference of it, written from the recipe notes
(../shared/reference/training-recipe.md §2), in plain torch so that every line can be read:

- a pre-LN transformer decoder with the text tower's width, MLP and heads and half its depth
  (floor(text layers / 2), at least 1); per layer: LN → self-attention (causal, or none for parallel
  prediction) → residual → LN → cross-attention to the *un-pooled* image tokens (the vision tower's
  post-LN `last_hidden_state`, before the MAP head) → residual → LN → MLP (the text tower's activation)
  → residual; a final LN and a vocabulary projection with bias; a token table of vocab + 1 rows (the
  last row is the mask token of parallel prediction) and a learned position table;
- parameter names, as in our `decoder.safetensors`: `decoder.embed_tokens.weight` (V+1, D),
  `decoder.position_embedding.weight` (L, D), `decoder.layers.{i}.layer_norm{1,2,3}.{weight,bias}`,
  `decoder.layers.{i}.self_attn.{q,k,v,out}_proj.{weight,bias}`, `decoder.layers.{i}.cross_attn.q_proj`
  (D, D), `.k_proj` / `.v_proj` (D, Dv), `.out_proj` (D, D), `decoder.layers.{i}.mlp.fc{1,2}`,
  `decoder.final_layer_norm.{weight,bias}`, `decoder.lm_head.{weight (V, D), bias (V)}`;
- the LocCa loss: token cross-entropy, averaged over the weighted (non-prefix, non-pad) positions of
  each sequence, then over all sequences of the batch (a caption for every example, plus one referring
  expression and one grounded caption for examples that have regions); total = sigmoid + LocCa.

The decoder option `memory_position = "sincos2d"` adds, before the decoder (so to the inputs of every
cross-attention's key and value projections), a fixed 2-D sine-cosine code of each image token's place
(DETR-style, no parameters): the token at row y, column x of an h x w grid sits at the fractional place
((y + 1/2) R / h - 1/2, (x + 1/2) R / w - 1/2) of the tower's R x R reference grid, and its code is
[sin(x w_k), cos(x w_k), sin(y w_k), cos(y w_k)] for w_k = 1 / 10000^(k / (q - 1)), k < q = Dv / 4
(big_vision's posemb_sincos_2d at fractional positions). The golden runs the same batch a second time
with it (keys "pos.*"), and stores two code tables ("pos.code.*", a square and a non-square grid).

The sequences are given here as explicit arrays (decoder inputs, targets, weights, causal flag, image
index), so that the golden does not depend on how prompts are tokenised; the TypeScript side tests its
prompt builder separately. Computed in float64; writes tests/fixtures/goldens/locca-grads.{safetensors,json}.
"""
import common  # noqa: F401  (must be first: torch set-up)

import json
import math
import os

import torch
import transformers
from safetensors.torch import save_file
from torch import nn
from transformers import SiglipModel

from common import FIXTURES, GOLDENS

N = 4  # images (and sigmoid texts) in the batch
T = 64  # sigmoid text length
L = 12  # decoder sequence length used by the golden (the table has max_position_embeddings rows)


def gelu(x, act):
    if act == "gelu_pytorch_tanh":
        return nn.functional.gelu(x, approximate="tanh")
    if act == "gelu":
        return nn.functional.gelu(x)
    raise SystemExit(f"unsupported hidden_act {act}")


class Attention(nn.Module):
    def __init__(self, d, dkv, heads):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(dkv, d)
        self.v_proj = nn.Linear(dkv, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x, mem, allowed):
        # x (S, Lq, D), mem (S, Lk, Dkv), allowed (S, Lq, Lk) bool or None
        s, lq, d = x.shape
        lk = mem.shape[1]
        hd = d // self.heads
        q = self.q_proj(x).view(s, lq, self.heads, hd).transpose(1, 2)
        k = self.k_proj(mem).view(s, lk, self.heads, hd).transpose(1, 2)
        v = self.v_proj(mem).view(s, lk, self.heads, hd).transpose(1, 2)
        a = (q @ k.transpose(-1, -2)) / math.sqrt(hd)  # (S, H, Lq, Lk)
        if allowed is not None:
            a = a.masked_fill(~allowed[:, None], float("-inf"))
        o = a.softmax(-1) @ v  # (S, H, Lq, hd)
        return self.out_proj(o.transpose(1, 2).reshape(s, lq, d))


class Mlp(nn.Module):
    def __init__(self, d, m, act):
        super().__init__()
        self.act = act
        self.fc1 = nn.Linear(d, m)
        self.fc2 = nn.Linear(m, d)

    def forward(self, x):
        return self.fc2(gelu(self.fc1(x), self.act))


class DecoderLayer(nn.Module):
    def __init__(self, d, dv, m, heads, eps, act):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(d, eps=eps)
        self.self_attn = Attention(d, d, heads)
        self.layer_norm2 = nn.LayerNorm(d, eps=eps)
        self.cross_attn = Attention(d, dv, heads)
        self.layer_norm3 = nn.LayerNorm(d, eps=eps)
        self.mlp = Mlp(d, m, act)

    def forward(self, x, mem, self_allowed, mem_allowed=None):
        h = self.layer_norm1(x)
        x = x + self.self_attn(h, h, self_allowed)
        h = self.layer_norm2(x)
        x = x + self.cross_attn(h, mem, mem_allowed)
        h = self.layer_norm3(x)
        return x + self.mlp(h)


class Decoder(nn.Module):
    def __init__(self, text_cfg, vision_width):
        super().__init__()
        d, m, heads = text_cfg.hidden_size, text_cfg.intermediate_size, text_cfg.num_attention_heads
        self.vocab = text_cfg.vocab_size
        layers = max(1, text_cfg.num_hidden_layers // 2)
        eps, act = text_cfg.layer_norm_eps, text_cfg.hidden_act
        self.embed_tokens = nn.Embedding(self.vocab + 1, d)
        self.position_embedding = nn.Embedding(text_cfg.max_position_embeddings, d)
        self.layers = nn.ModuleList([DecoderLayer(d, vision_width, m, heads, eps, act) for _ in range(layers)])
        self.final_layer_norm = nn.LayerNorm(d, eps=eps)
        self.lm_head = nn.Linear(d, self.vocab)

    def forward(self, ids, mem, causal, mem_keep=None):
        # ids (S, L) int, mem (S, P, Dv), causal (S,) bool, mem_keep (S, P) bool or None
        # (NaFlex: the real patches of each sequence's image) → logits (S, L, V)
        s, l = ids.shape
        x = self.embed_tokens(ids) + self.position_embedding.weight[:l][None]
        tri = torch.tril(torch.ones(l, l, dtype=torch.bool))
        allowed = torch.where(causal[:, None, None], tri[None], torch.ones(1, l, l, dtype=torch.bool))
        mem_allowed = None if mem_keep is None else mem_keep[:, None, :].expand(s, l, mem.shape[1])
        for layer in self.layers:
            x = layer(x, mem, allowed, mem_allowed)
        return self.lm_head(self.final_layer_norm(x))


def memory_position_code(h, w, grid, width, temperature=10_000.0):
    # (h*w, width) float64, row-major over the h x w grid (the module docstring)
    q = width // 4
    omega = 1.0 / temperature ** (torch.arange(q, dtype=torch.float64) / (q - 1))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    ys = ((ys + 0.5) * grid / h - 0.5).reshape(-1, 1)
    xs = ((xs + 0.5) * grid / w - 0.5).reshape(-1, 1)
    return torch.cat([torch.sin(xs * omega), torch.cos(xs * omega), torch.sin(ys * omega), torch.cos(ys * omega)], dim=1)


def random_decoder(text_cfg, vision_width, seed=7):
    """A float64 decoder with non-trivial values everywhere (no zero-init head), so that every gradient is tested."""
    torch.manual_seed(seed)
    dec = Decoder(text_cfg, vision_width).double()
    with torch.no_grad():
        for p in dec.parameters():
            p.copy_(torch.randn_like(p) * 0.2)
        for name, p in dec.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                p.add_(1.0)
        for p in dec.parameters():
            p.copy_(p.float().double())  # exactly representable in float32: both sides use the same values
    return dec


def locca_loss(logits, targets, weights):
    # per position CE, weighted mean per sequence, mean over sequences
    ce = torch.logsumexp(logits, -1) - logits.gather(-1, targets[..., None])[..., 0]  # (S, L)
    per_seq = (ce * weights).sum(-1) / weights.sum(-1)
    return per_seq.mean(), per_seq


def batch():
    g = torch.Generator().manual_seed(20261202)
    px = torch.randn((N, 3, 32, 32), generator=g, dtype=torch.float32)
    ids = torch.zeros((N, T), dtype=torch.int64)
    for i, n in enumerate([6, 9, 3, 14]):
        ids[i, :n] = torch.randint(2, 1024, (n,), generator=g)
        ids[i, n] = 1
    # decoder sequences: a caption per image (rows 0-3; rows 1 and 3 parallel), AREF and GCAP for images 0 and 2
    image = torch.tensor([0, 1, 2, 3, 0, 0, 2, 2])
    causal = torch.tensor([True, False, True, False, True, True, True, True])
    lengths = [7, 10, 4, 12, 9, 8, 11, 6]  # tokens incl. prefix and eos (row 3 fills L: no pad)
    prefix = [2, 2, 2, 2, 3, 3, 3, 3]
    S = len(lengths)
    targets = torch.zeros((S, L), dtype=torch.int64)
    weights = torch.zeros((S, L), dtype=torch.float64)
    dec_in = torch.zeros((S, L), dtype=torch.int64)
    for s, n in enumerate(lengths):
        toks = torch.randint(3, 1024, (n,), generator=g)
        toks[n - 1] = 1  # eos
        targets[s, :n] = toks
        weights[s, prefix[s]:n] = 1.0
        if causal[s]:
            dec_in[s, 0] = 2  # bos
            dec_in[s, 1:n] = toks[: n - 1]
        else:
            dec_in[s, :] = 1024  # the mask token (id = vocab), every position
    return px, ids, dec_in, targets, weights, causal, image


def main():
    model_dir = os.path.join(FIXTURES, "models", "fixres-f32")
    model = SiglipModel.from_pretrained(model_dir, attn_implementation="eager").double().eval()
    tc = model.config.text_config
    dec = random_decoder(tc, model.config.vision_config.hidden_size)
    px, ids, dec_in, targets, weights, causal, image = batch()
    out = model(input_ids=ids, pixel_values=px.double(), return_loss=True)
    mem = out.vision_model_output.last_hidden_state  # (N, P, Dv), post-LN, before the MAP head
    logits = dec(dec_in, mem[image], causal)
    loc, per_seq = locca_loss(logits, targets, weights)
    total = out.loss + loc
    total.backward()
    tensors = {
        "inputs.pixel_values": px.contiguous(),
        "inputs.input_ids": ids.contiguous(),
        "inputs.decoder_input_ids": dec_in.contiguous(),
        "inputs.decoder_targets": targets.contiguous(),
        "inputs.decoder_weights": weights.float().contiguous(),
        "inputs.decoder_causal": causal.to(torch.int64).contiguous(),
        "inputs.decoder_image": image.contiguous(),
        "loss": total.detach().reshape(1).contiguous(),
        "sigmoid_loss": out.loss.detach().reshape(1).contiguous(),
        "locca_loss": loc.detach().reshape(1).contiguous(),
        "locca_per_sequence": per_seq.detach().contiguous(),
        "decoder_logits": logits.detach().float().contiguous(),
    }
    names = []
    for name, p in model.named_parameters():
        tensors[f"grad.{name}"] = p.grad.detach().float().contiguous()
        names.append(name)
    dec_weights = {}
    for name, p in dec.named_parameters():
        key = f"decoder.{name}"
        tensors[f"grad.{key}"] = p.grad.detach().float().contiguous()
        dec_weights[key] = p.detach().float().contiguous()
        names.append(key)
    # the same batch with the memory position code (fixres-f32: 32 px in 8-px patches, R = 4)
    vc = model.config.vision_config
    grid = vc.image_size // vc.patch_size
    code = memory_position_code(grid, grid, grid, vc.hidden_size)
    for p in list(model.parameters()) + list(dec.parameters()):
        p.grad = None
    out2 = model(input_ids=ids, pixel_values=px.double(), return_loss=True)
    mem2 = out2.vision_model_output.last_hidden_state + code[None]
    logits2 = dec(dec_in, mem2[image], causal)
    loc2, per_seq2 = locca_loss(logits2, targets, weights)
    total2 = out2.loss + loc2
    total2.backward()
    tensors["pos.loss"] = total2.detach().reshape(1).contiguous()
    tensors["pos.locca_loss"] = loc2.detach().reshape(1).contiguous()
    tensors["pos.locca_per_sequence"] = per_seq2.detach().contiguous()
    tensors["pos.decoder_logits"] = logits2.detach().float().contiguous()
    tensors["pos.code.4x4.grid4"] = code.float().contiguous()
    tensors["pos.code.3x5.grid4"] = memory_position_code(3, 5, 4, vc.hidden_size).float().contiguous()
    for name, p in list(model.named_parameters()) + [(f"decoder.{n}", q) for n, q in dec.named_parameters()]:
        tensors[f"pos.grad.{name}"] = p.grad.detach().float().contiguous()
    save_file(dec_weights, os.path.join(GOLDENS, "locca-decoder.safetensors"))
    save_file(tensors, os.path.join(GOLDENS, "locca-grads.safetensors"))
    manifest = {
        "model_dir": "tests/fixtures/models/fixres-f32",
        "decoder_weights": "tests/fixtures/goldens/locca-decoder.safetensors",
        "images": N,
        "sequences": int(dec_in.shape[0]),
        "decoder_length": L,
        "loss": total.item(),
        "sigmoid_loss": out.loss.item(),
        "locca_loss": loc.item(),
        "pos_loss": total2.item(),
        "pos_locca_loss": loc2.item(),
        "memory_position": "pos.* keys: the same batch with memory_position sincos2d (grid 4); pos.code.HxW.gridR: code tables",
        "loss_definition": "sigmoid (SiglipModel return_loss=True) + mean over sequences of (sum_k w_k CE_k / sum_k w_k)",
        "precision": "float64 compute; gradients and logits stored as float32, losses as float64",
        "parameters": names,
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
    }
    with open(os.path.join(GOLDENS, "locca-grads.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"locca-grads: loss {total.item():.10f} (sigmoid {out.loss.item():.10f}, locca {loc.item():.10f}), {len(names)} gradients")


if __name__ == "__main__":
    main()
