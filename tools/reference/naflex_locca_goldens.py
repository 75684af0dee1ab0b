"""NaFlex + LocCa training goldens (PyTorch autograd oracle): the LocCa decoder on a NaFlex tower.

Writes tests/fixtures/goldens/naflex-locca-grads.{safetensors,json}. The towers are transformers'
`Siglip2Model` on the tiny `naflex-f32` checkpoint, cast to float64 (as naflex_train_goldens.py), with
that script's batch: 4 images with the patch grids 4x5, 2x8, 5x3 and 1x18, padded to 20 rows, random
values in the padding rows. The decoder, its loss and its sequences are locca_goldens.py's (`Decoder`,
`locca_loss`, the 8 sequences of `batch()`: captions, parallel rows, referring and grounded rows).

What NaFlex adds to the decoder:
- its cross-attention sees only the real patches of each sequence's image (`mem_keep`, the tower's
  pixel_attention_mask), so the padding rows of the memory change nothing;
- with memory_position "sincos2d" (keys "pos.*") each image gets the code of its own h x w grid,
  stretched onto the 16 x 16 reference grid of the learned position table
  (locca_goldens.memory_position_code(h, w, 16, Dv)), zero rows on its padding.

Loss = sigmoid (Siglip2Model return_loss=True) + LocCa; every gradient of the towers and the decoder.
"""
import common  # noqa: F401  (must be first: torch set-up)

import json
import math
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers import Siglip2Model

from common import FIXTURES, GOLDENS
from locca_goldens import batch as locca_batch
from locca_goldens import locca_loss, memory_position_code, random_decoder
from naflex_train_goldens import GRIDS, L, batch_inputs


def run(model, dec, inputs, seqs, code):
    px, mask, spatial, ids = inputs
    dec_in, targets, weights, causal, image = seqs
    out = model(input_ids=ids, pixel_values=px.double(), pixel_attention_mask=mask, spatial_shapes=spatial, return_loss=True)
    mem = out.vision_model_output.last_hidden_state  # (N, L, Dv), post-LN, before the MAP head
    if code is not None:
        mem = mem + code
    keep = mask.bool()
    logits = dec(dec_in, mem[image], causal, keep[image])
    loc, per_seq = locca_loss(logits, targets, weights)
    total = out.loss + loc
    total.backward()
    return out, loc, per_seq, logits, total


def main():
    model_dir = os.path.join(FIXTURES, "models", "naflex-f32")
    model = Siglip2Model.from_pretrained(model_dir, attn_implementation="eager").double().eval()
    v = model.config.vision_config
    F = v.num_channels * v.patch_size * v.patch_size
    inputs = batch_inputs(F)
    _, _, dec_in, targets, weights, causal, image = locca_batch()
    seqs = (dec_in, targets, weights, causal, image)
    dec = random_decoder(model.config.text_config, v.hidden_size)
    grid = round(math.sqrt(v.num_patches))
    code = torch.zeros((len(GRIDS), L, v.hidden_size), dtype=torch.float64)
    for i, (h, w) in enumerate(GRIDS):
        code[i, : h * w] = memory_position_code(h, w, grid, v.hidden_size)

    tensors = {
        "inputs.decoder_input_ids": dec_in.contiguous(),
        "inputs.decoder_targets": targets.contiguous(),
        "inputs.decoder_weights": weights.float().contiguous(),
        "inputs.decoder_causal": causal.to(torch.int64).contiguous(),
        "inputs.decoder_image": image.contiguous(),
        "pos.memory_position": code.float().contiguous(),
    }
    params = list(model.named_parameters()) + [(f"decoder.{n}", q) for n, q in dec.named_parameters()]
    summary = {}
    for prefix, c in (("", None), ("pos.", code)):
        for _, p in params:
            p.grad = None
        out, loc, per_seq, logits, total = run(model, dec, inputs, seqs, c)
        tensors[f"{prefix}loss"] = total.detach().reshape(1).contiguous()
        tensors[f"{prefix}sigmoid_loss"] = out.loss.detach().reshape(1).contiguous()
        tensors[f"{prefix}locca_loss"] = loc.detach().reshape(1).contiguous()
        tensors[f"{prefix}locca_per_sequence"] = per_seq.detach().contiguous()
        tensors[f"{prefix}decoder_logits"] = logits.detach().float().contiguous()
        for name, p in params:
            tensors[f"{prefix}grad.{name}"] = p.grad.detach().float().contiguous()
        summary[prefix or "plain"] = {"loss": total.item(), "sigmoid_loss": out.loss.item(), "locca_loss": loc.item()}
    dec_weights = {f"decoder.{n}": q.detach().float().contiguous() for n, q in dec.named_parameters()}
    save_file(dec_weights, os.path.join(GOLDENS, "naflex-locca-decoder.safetensors"))
    save_file(tensors, os.path.join(GOLDENS, "naflex-locca-grads.safetensors"))
    manifest = {
        "model_dir": "tests/fixtures/models/naflex-f32",
        "naflex_batch": "tests/fixtures/goldens/naflex-train-grads.safetensors inputs.* (naflex_train_goldens.py batch_inputs)",
        "decoder_weights": "tests/fixtures/goldens/naflex-locca-decoder.safetensors",
        "grids": GRIDS,
        "length": L,
        "sequences": int(dec_in.shape[0]),
        "decoder_length": int(dec_in.shape[1]),
        "memory_grid": grid,
        "losses": summary,
        "precision": "model cast to float64 (position resize and attention softmax float32 inside transformers); gradients and logits stored as float32",
        "parameters": [n for n, _ in params],
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
    }
    with open(os.path.join(GOLDENS, "naflex-locca-grads.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"naflex-locca-grads: {summary}, {len(params)} gradients")


if __name__ == "__main__":
    main()
