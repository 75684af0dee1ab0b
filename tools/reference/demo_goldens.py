"""Goldens for the committed demo model (models/siglip2-demo): transformers loads the checkpoint that
our trainer wrote (tools/make-demo-model.ts) and embeds the two committed example images and a few
texts in the five scene languages. tests/demo-model.test.ts compares our embeddings with these.

    /path/to/python tools/reference/demo_goldens.py   # writes tests/fixtures/goldens/demo-model.json
"""
import json
import os

import common  # noqa: F401  (torchvision work-around first)
import torch
from PIL import Image
from transformers import AutoProcessor, SiglipModel

try:
    from transformers import Siglip2Tokenizer
except ImportError:  # pragma: no cover
    Siglip2Tokenizer = None

MODEL = os.path.join(common.REPO, "models", "siglip2-demo")
OUT = os.path.join(common.GOLDENS, "demo-model.json")
IMAGES = ["example-1.png", "example-2.png"]
TEXTS = [
    "a photo of a red circle.",
    "ein roter Kreis",
    "un círculo rojo",
    "un cercle rouge",
    "红色的圆",
    "a blue star and a yellow triangle",
    "",
]


def l2n(x):
    return x / x.norm(p=2, dim=-1, keepdim=True)


@torch.no_grad()
def main():
    if not os.path.exists(os.path.join(MODEL, "model.safetensors")):
        raise SystemExit(f"missing {MODEL}: run `npx tsx tools/make-demo-model.ts` first")
    model = SiglipModel.from_pretrained(MODEL, dtype=torch.float32).eval()
    proc = AutoProcessor.from_pretrained(MODEL)
    assert type(proc.image_processor).__name__ == "SiglipImageProcessor", type(proc.image_processor)
    assert Siglip2Tokenizer is not None, "transformers has no Siglip2Tokenizer"
    tok = Siglip2Tokenizer.from_pretrained(MODEL)  # SigLIP 2's lowercasing tokenizer on the same files
    seq = model.config.text_config.max_position_embeddings
    imgs = [Image.open(os.path.join(MODEL, f)).convert("RGB") for f in IMAGES]
    px = proc(images=imgs, return_tensors="pt")["pixel_values"]
    ids = tok(TEXTS, padding="max_length", max_length=seq, truncation=True, return_tensors="pt")["input_ids"]
    ie = l2n(model.get_image_features(pixel_values=px).pooler_output)
    te = l2n(model.get_text_features(input_ids=ids).pooler_output)
    logits = model(input_ids=ids, pixel_values=px).logits_per_image
    import transformers

    out = {
        "note": "SiglipModel.from_pretrained(models/siglip2-demo) + AutoProcessor (images) + Siglip2Tokenizer (texts)",
        "versions": {"transformers": transformers.__version__, "torch": torch.__version__},
        "images": IMAGES,
        "texts": TEXTS,
        "input_ids": ids.tolist(),
        "image_embeds": ie.tolist(),
        "text_embeds": te.tolist(),
        "logits_per_image": logits.tolist(),
    }
    with open(OUT, "w") as f:
        json.dump(out, f)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
