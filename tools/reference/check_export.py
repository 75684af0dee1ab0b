"""Check a `siglip2 export` folder with Python: onnxruntime on the exported files vs transformers on the checkpoint.

Python is an oracle only (never run by the tests). For a checkpoint CKPT exported to DIR:

    node dist/cli/main.js export --model CKPT --out DIR [--dtype int8]
    /work/venv-ref/bin/python tools/reference/check_export.py --model CKPT --export DIR

It feeds the same processor outputs to transformers' vision / text model (SiglipModel or Siglip2Model,
fp32, CPU) and to onnxruntime InferenceSessions on DIR/onnx/{vision,text}_model{,_int8}.onnx (only the
inputs each session declares), and prints, per file, the max-abs difference of the L2-normalised
pooler_output and the smallest row cosine. NaFlex checkpoints are run at several patch budgets, with the
processor's padding to max_num_patches (the w = 1 PyTorch-CPU quirk image is left out: see spec §1.4).
"""
import common  # noqa: F401  (must be first: patches torchvision for CPU torch, sets threads)

import argparse
import glob
import json
import os

import numpy as np
import onnxruntime as ort
import torch
import transformers
from PIL import Image
from transformers import AutoModel, AutoProcessor

transformers.logging.set_verbosity_error()

TEXTS = [
    "A photo of two cats sleeping on a red sofa.",
    "a dog",
    "",
    "两只猫睡在红色的沙发上",
    "An extremely long caption " * 20,
]


def normalize(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def compare(name, got, want):
    a, b = normalize(got), normalize(want)
    maxabs = float(np.max(np.abs(a - b)))
    cos = float(np.min(np.sum(a * b, axis=-1)))
    print(json.dumps({"check": name, "rows": int(a.shape[0]), "max_abs": maxabs, "min_cos": cos}))
    return maxabs


def run(path, feeds):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in s.get_inputs()]
    return s.run(["pooler_output"], {k: v for k, v in feeds.items() if k in names})[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="checkpoint folder (the one exported)")
    ap.add_argument("--export", required=True, help="folder written by siglip2 export")
    args = ap.parse_args()

    model = AutoModel.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(args.model)
    naflex = model.config.model_type == "siglip2"
    files = sorted(glob.glob(os.path.join(args.export, "onnx", "*.onnx")))
    print(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__, "onnxruntime": ort.__version__,
                      "model_type": model.config.model_type, "files": [os.path.basename(f) for f in files]}))

    inputs = os.path.join(common.FIXTURES, "model-inputs")
    worst = {}
    with torch.no_grad():
        tok = processor.tokenizer(TEXTS, padding="max_length", max_length=64, truncation=True, return_tensors="pt")
        want_text = model.text_model(input_ids=tok["input_ids"]).pooler_output.numpy()
        feeds_text = {"input_ids": tok["input_ids"].numpy().astype(np.int64)}
        if naflex:
            paths = [p for p in sorted(glob.glob(os.path.join(inputs, "naflex", "*.png"))) if "tall_4x1000" not in p]
            images = [Image.open(p).convert("RGB") for p in paths]
            cases = []
            for m in (64, 256, 576):
                px = processor.image_processor(images=images, max_num_patches=m, patch_size=model.config.vision_config.patch_size, return_tensors="pt")
                want = model.vision_model(pixel_values=px["pixel_values"], pixel_attention_mask=px["pixel_attention_mask"],
                                          spatial_shapes=px["spatial_shapes"]).pooler_output.numpy()
                feeds = {"pixel_values": px["pixel_values"].numpy().astype(np.float32),
                         "pixel_attention_mask": px["pixel_attention_mask"].numpy().astype(np.int32),
                         "spatial_shapes": px["spatial_shapes"].numpy().astype(np.int64)}
                cases.append((f"m{m}", feeds, want))
        else:
            paths = sorted(glob.glob(os.path.join(inputs, "*.png")))
            images = [Image.open(p).convert("RGB") for p in paths]
            px = processor.image_processor(images=images, return_tensors="pt")
            want = model.vision_model(pixel_values=px["pixel_values"]).pooler_output.numpy()
            cases = [("fixres", {"pixel_values": px["pixel_values"].numpy().astype(np.float32)}, want)]

    for f in files:
        base = os.path.basename(f)
        if base.startswith("vision_model"):
            for label, feeds, want in cases:
                worst[f"{base}:{label}"] = compare(f"{base} {label} ({len(images)} images)", run(f, feeds), want)
        elif base.startswith("text_model"):
            worst[base] = compare(f"{base} ({len(TEXTS)} texts)", run(f, feeds_text), want_text)
    print(json.dumps({"worst_max_abs": max(worst.values()) if worst else None}))


if __name__ == "__main__":
    main()
