"""Goldens for ACID curation (src/train/curate.ts), float64 PyTorch.

Per-example loss of example i in a batch of n (both models, each with its own t = exp(t') and b):
  l_ij = -logsigmoid(z_ij * (t * <x_i, y_j> + b)),  z = 2I - 1
  loss_i = (sum_j l_ij + sum_j l_ji) / 2          (image row i + text column i, halved)
Learnability = student loss - teacher loss; selection = the top k, ties to the lower position.

1. "math": random L2-normalised embeddings of different widths for student and teacher.
2. "models": student = tests/fixtures/models/trained-f32, teacher = tests/fixtures/models/fixres-odd
   (another image size and width), loaded with transformers in float64; images from
   tests/fixtures/images through each model's own image processor, captions through its tokenizer
   (padded to max_length, lower-case text).

  /path/to/python tools/reference/curate_goldens.py   # writes tests/fixtures/goldens/curate.json
"""
import common  # noqa: F401  (must be first: torch set-up)

import json
import os

import torch
import torch.nn.functional as F
import transformers
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer, SiglipModel

from common import FIXTURES, GOLDENS

IMAGES = ["rgb_64x64.png", "rgb_23x37.png", "photo_48x64.jpg", "grey_31x17.png", "rgba_19x29.png", "pal_21x33.png", "grad_224x224.png", "photo_200x300.png"]
CAPTIONS = ["a red square", "two blue circles", "a photo of a cat", "grey sky over the sea", "a yellow star", "a small green triangle", "a gradient from black to white", "a tall photo of a street"]


def example_losses(img, txt, scale, bias):
    n = img.shape[0]
    z = 2 * torch.eye(n, dtype=torch.float64) - 1
    l = -F.logsigmoid(z * (scale * img @ txt.T + bias))
    return (l.sum(1) + l.sum(0)) / 2


def top_k(scores, k):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    return sorted(order[:k])


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def math_case():
    g = torch.Generator().manual_seed(20261202)
    n, ds, dt = 10, 6, 4
    s_img, s_txt = unit(torch.randn(n, ds, generator=g, dtype=torch.float64)), unit(torch.randn(n, ds, generator=g, dtype=torch.float64))
    t_img, t_txt = unit(torch.randn(n, dt, generator=g, dtype=torch.float64)), unit(torch.randn(n, dt, generator=g, dtype=torch.float64))
    s_scale, s_bias, t_scale, t_bias = 10.0, -3.0, 4.5, -1.25
    student = example_losses(s_img, s_txt, s_scale, s_bias)
    teacher = example_losses(t_img, t_txt, t_scale, t_bias)
    scores = (student - teacher).tolist()
    # the batch loss identity: sum_i loss_i = n * big_vision loss
    z = 2 * torch.eye(n, dtype=torch.float64) - 1
    bv = -F.logsigmoid(z * (s_scale * s_img @ s_txt.T + s_bias)).sum(1).mean()
    assert abs(float(student.sum()) - n * float(bv)) < 1e-9
    return {
        "n": n, "keep": 3,
        "student": {"image": s_img.flatten().tolist(), "text": s_txt.flatten().tolist(), "dim": ds, "scale": s_scale, "bias": s_bias},
        "teacher": {"image": t_img.flatten().tolist(), "text": t_txt.flatten().tolist(), "dim": dt, "scale": t_scale, "bias": t_bias},
        "student_losses": student.tolist(), "teacher_losses": teacher.tolist(), "scores": scores, "selected": top_k(scores, 3),
    }


def model_losses(name):
    d = os.path.join(FIXTURES, "models", name)
    model = SiglipModel.from_pretrained(d, attn_implementation="eager").double().eval()
    proc = AutoImageProcessor.from_pretrained(d)
    tok = AutoTokenizer.from_pretrained(d)
    imgs = [Image.open(os.path.join(FIXTURES, "images", f)).convert("RGB") for f in IMAGES]
    px = proc(images=imgs, return_tensors="pt")["pixel_values"].double()
    T = model.config.text_config.max_position_embeddings
    ids = tok([c.lower() for c in CAPTIONS], padding="max_length", max_length=T, truncation=True, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=px)
        scale, bias = float(model.logit_scale.exp()), float(model.logit_bias)
        return example_losses(out.image_embeds, out.text_embeds, scale, bias), {"image_size": px.shape[-1], "dim": out.image_embeds.shape[-1], "ids": ids.tolist()}


def models_case():
    student, s_info = model_losses("trained-f32")
    teacher, t_info = model_losses("fixres-odd")
    scores = (student - teacher).tolist()
    return {
        "student_model": "tests/fixtures/models/trained-f32", "teacher_model": "tests/fixtures/models/fixres-odd",
        "images": IMAGES, "captions": CAPTIONS, "keep": 4,
        "student_image_size": s_info["image_size"], "teacher_image_size": t_info["image_size"],
        "student_dim": s_info["dim"], "teacher_dim": t_info["dim"],
        "student_ids": s_info["ids"], "teacher_ids": t_info["ids"],
        "student_losses": student.tolist(), "teacher_losses": teacher.tolist(), "scores": scores, "selected": top_k(scores, 4),
    }


def main():
    out = {
        "definition": "loss_i = (sum_j l_ij + sum_j l_ji) / 2, l_ij = -logsigmoid((2I-1)_ij (t <x_i,y_j> + b)); score = student - teacher; top-k, ties to the lower position",
        "precision": "float64",
        "math": math_case(),
        "models": models_case(),
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
    }
    with open(os.path.join(GOLDENS, "curate.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    m = out["models"]
    print(f"curate: math selected {out['math']['selected']}; models selected {m['selected']} (scores {[round(s, 4) for s in m['scores']]})")


if __name__ == "__main__":
    main()
