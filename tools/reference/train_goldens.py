"""Training goldens (PyTorch autograd oracle) for the TypeScript autodiff and sigmoid loss.

Writes tests/fixtures/goldens/train-grads.{safetensors,json}: for the tiny `fixres-f32` checkpoint and a
fixed batch of 4 image-text pairs, the big_vision sigmoid loss as transformers computes it
(`SiglipModel(..., return_loss=True)`: labels 2I-1, -sum(logsigmoid(labels * logits)) / n), the logits,
and the gradient of the loss with respect to every parameter. Computed in float64 (the model is cast
to double) so that the goldens are the exact values; the TS side computes in float32.

If tests/fixtures/models/trained-f32 exists (written by `npx tsx tools/make-trained-fixture.ts`, a
deterministic TypeScript fine-tuning run), this script also loads it with transformers
(`SiglipModel.from_pretrained`) and stores its image/text embeddings for fixed inputs in
tests/fixtures/goldens/trained-f32.{safetensors,json}.
"""
import common  # noqa: F401  (must be first: torch set-up)

import json
import os

import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import SiglipModel

from common import FIXTURES, GOLDENS

N = 4
T = 64


def batch_inputs():
    g = torch.Generator().manual_seed(20250214)
    px = torch.randn((N, 3, 32, 32), generator=g, dtype=torch.float32)
    ids = torch.zeros((N, T), dtype=torch.int64)  # pad id 0
    lengths = [5, 12, 1, 63]
    for i, n in enumerate(lengths):
        toks = torch.randint(2, 1024, (n,), generator=g)
        toks[: min(n, 3)] = torch.tensor([600, 700, 600])[: min(n, 3)]  # repeated ids within and across texts
        ids[i, :n] = toks
        if n < T:
            ids[i, n] = 1  # <eos>
    return px, ids


def grads_golden():
    model_dir = os.path.join(FIXTURES, "models", "fixres-f32")
    model = SiglipModel.from_pretrained(model_dir, attn_implementation="eager").double().eval()
    px, ids = batch_inputs()
    out = model(input_ids=ids, pixel_values=px.double(), return_loss=True)
    out.loss.backward()
    tensors = {
        "inputs.pixel_values": px.contiguous(),
        "inputs.input_ids": ids.contiguous(),
        "loss": out.loss.detach().reshape(1).contiguous(),
        "logits_per_image": out.logits_per_image.detach().contiguous(),
    }
    names = []
    for name, p in model.named_parameters():
        tensors[f"grad.{name}"] = p.grad.detach().float().contiguous()
        names.append(name)
    save_file(tensors, os.path.join(GOLDENS, "train-grads.safetensors"))
    manifest = {
        "model_dir": "tests/fixtures/models/fixres-f32",
        "batch": N,
        "loss": out.loss.item(),
        "loss_definition": "SiglipModel return_loss=True: eye -> m1_diag1 = 2I-1; -sum(logsigmoid(m1_diag1*logits_per_text), -1).mean()",
        "precision": "model cast to float64; gradients stored as float32, loss/logits as float64",
        "parameters": names,
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
    }
    with open(os.path.join(GOLDENS, "train-grads.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"train-grads: loss {float(out.loss):.10f}, {len(names)} parameter gradients")


def trained_golden():
    model_dir = os.path.join(FIXTURES, "models", "trained-f32")
    if not os.path.exists(os.path.join(model_dir, "config.json")):
        print("trained-f32: not present (run `npx tsx tools/make-trained-fixture.ts` first); skipped")
        return
    model, info = SiglipModel.from_pretrained(model_dir, attn_implementation="eager", output_loading_info=True)
    model.eval()
    problems = {k: v for k, v in info.items() if v}
    if problems:
        raise SystemExit(f"trained-f32: transformers reported loading problems: {problems}")
    px, ids = batch_inputs()
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=px)
    tensors = {
        "inputs.pixel_values": px.contiguous(),
        "inputs.input_ids": ids.contiguous(),
        "image_embeds": out.image_embeds.contiguous(),
        "text_embeds": out.text_embeds.contiguous(),
        "image_pooler_output": out.vision_model_output.pooler_output.contiguous(),
        "text_pooler_output": out.text_model_output.pooler_output.contiguous(),
        "logits_per_image": out.logits_per_image.contiguous(),
        "logit_scale": model.logit_scale.detach().contiguous(),
        "logit_bias": model.logit_bias.detach().contiguous(),
    }
    save_file(tensors, os.path.join(GOLDENS, "trained-f32.safetensors"))
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    manifest = {
        "model_dir": "tests/fixtures/models/trained-f32",
        "loaded_with": "transformers SiglipModel.from_pretrained (eager attention), float32; no missing, unexpected or mismatched keys",
        "config_model_type": cfg.get("model_type"),
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
    }
    with open(os.path.join(GOLDENS, "trained-f32.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"trained-f32: embeddings of {N} images / texts; logit_scale {float(model.logit_scale):.6f}")


if __name__ == "__main__":
    grads_golden()
    trained_golden()
