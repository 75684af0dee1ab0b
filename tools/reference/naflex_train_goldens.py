"""NaFlex training goldens (PyTorch autograd oracle) for the TypeScript NaFlex training graph.

Writes tests/fixtures/goldens/naflex-train-grads.{safetensors,json}: for the tiny `naflex-f32`
checkpoint (Siglip2Model, patch 4, a 16x16 learned position grid) and a fixed batch of 4 images
with different patch grids padded to one length L, the sigmoid loss as transformers computes it
(`Siglip2Model(..., return_loss=True)`), the logits, and the gradient of the loss with respect to
every parameter -- the position table's gradient goes through the antialiased bilinear resize of
`Siglip2VisionEmbeddings.resize_positional_embeddings`, and the key mask acts in every encoder layer
and in the MAP head. The model is cast to float64 (eager attention). Two places stay float32 in
transformers itself: the position resize (upcast "to float32 on CPU") and the attention softmax
(`softmax(..., dtype=float32)`), so the goldens are float64 elsewhere and float32-exact there.

Grids cover: downsampling both axes (4x5, 5x3), downsampling one axis (2x8), and upsampling the width
with a 1-row height (1x18). The padding rows of pixel_values hold random values, not zeros: with
correct masks they change nothing.
"""
import common  # noqa: F401  (must be first: torch set-up)

import json
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers import Siglip2Model

from common import FIXTURES, GOLDENS

T = 64
GRIDS = [(4, 5), (2, 8), (5, 3), (1, 18)]
L = 20


def batch_inputs(F):
    g = torch.Generator().manual_seed(20261202)
    n = len(GRIDS)
    px = torch.randn((n, L, F), generator=g, dtype=torch.float32)  # padding rows random too
    mask = torch.zeros((n, L), dtype=torch.int32)
    for i, (h, w) in enumerate(GRIDS):
        mask[i, : h * w] = 1
    spatial = torch.tensor(GRIDS, dtype=torch.int64)
    ids = torch.zeros((n, T), dtype=torch.int64)
    for i, k in enumerate([7, 3, 20, 64]):
        toks = torch.randint(2, 1024, (k,), generator=g)
        ids[i, :k] = toks
        if k < T:
            ids[i, k] = 1  # <eos>
    return px, mask, spatial, ids


def main():
    model_dir = os.path.join(FIXTURES, "models", "naflex-f32")
    model = Siglip2Model.from_pretrained(model_dir, attn_implementation="eager").double().eval()
    v = model.config.vision_config
    F = v.num_channels * v.patch_size * v.patch_size
    px, mask, spatial, ids = batch_inputs(F)
    out = model(input_ids=ids, pixel_values=px.double(), pixel_attention_mask=mask, spatial_shapes=spatial, return_loss=True)
    out.loss.backward()
    tensors = {
        "inputs.pixel_values": px.contiguous(),
        "inputs.pixel_attention_mask": mask.contiguous(),
        "inputs.spatial_shapes": spatial.contiguous(),
        "inputs.input_ids": ids.contiguous(),
        "loss": out.loss.detach().reshape(1).contiguous(),
        "logits_per_image": out.logits_per_image.detach().contiguous(),
    }
    names = []
    for name, p in model.named_parameters():
        tensors[f"grad.{name}"] = p.grad.detach().float().contiguous()
        names.append(name)
    save_file(tensors, os.path.join(GOLDENS, "naflex-train-grads.safetensors"))
    manifest = {
        "model_dir": "tests/fixtures/models/naflex-f32",
        "grids": GRIDS,
        "length": L,
        "loss": out.loss.item(),
        "precision": "model cast to float64 (position resize and attention softmax float32 inside transformers); gradients stored as float32",
        "parameters": names,
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
    }
    with open(os.path.join(GOLDENS, "naflex-train-grads.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"naflex-train-grads: loss {out.loss.item():.10f}, {len(names)} parameter gradients, grids {GRIDS} padded to {L}")


if __name__ == "__main__":
    main()
