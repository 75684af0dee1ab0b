"""Write random-weight checkpoints at real sizes (Hub layout) for the benchmarks in bench/.

They are large (hundreds of MB to GB) and live outside the repository, in
$SIGLIP2_BENCH_CACHE or ~/.cache/siglip2-bench. Random weights: only speed and memory
are meaningful, never the embeddings.

    python tools/reference/make_bench_checkpoints.py [NAME ...]     # default: all
"""
import json
import os
import shutil
import sys

import common  # noqa: F401  (torchvision patch, threads)
import torch
from transformers import (Siglip2Config, Siglip2ImageProcessor, Siglip2Model, SiglipConfig,
                          SiglipImageProcessor, SiglipModel)

OUT = os.environ.get("SIGLIP2_BENCH_CACHE", os.path.expanduser("~/.cache/siglip2-bench"))
SO400M = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16)
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4)

# name -> (model_type, text_config, vision_config, preprocessor)
CHECKPOINTS = {
    "b16-224": ("siglip", {}, dict(image_size=224, patch_size=16), 224),
    "b16-naflex": ("siglip2", {}, dict(patch_size=16, num_patches=256), 256),
    "so400m14-384": ("siglip", dict(SO400M), dict(SO400M, image_size=384, patch_size=14), 384),
    # B/16's preprocessing (224 px) on a 1-layer, 32-wide model: bench/index-profile.ts times what is not the model
    "tiny-224": ("siglip", dict(TINY), dict(TINY, image_size=224, patch_size=16), 224),
}


def tokenizer_files(dst: str) -> None:
    tok = common.require_gemma_tokenizer()
    shutil.copy(tok, os.path.join(dst, "tokenizer.json"))
    cfg = {"add_bos_token": False, "add_eos_token": True, "tokenizer_class": "GemmaTokenizer",
           "padding_side": "right", "model_input_names": ["input_ids"]}
    with open(os.path.join(dst, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def make(name: str) -> None:
    model_type, text, vision, pp = CHECKPOINTS[name]
    dst = os.path.join(OUT, name)
    if os.path.exists(os.path.join(dst, "config.json")):
        print(f"{dst}: exists")
        return
    os.makedirs(dst, exist_ok=True)
    text = dict(text, vocab_size=256000)
    torch.manual_seed(0)
    if model_type == "siglip":
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision)).eval()
        proc = SiglipImageProcessor(size={"height": pp, "width": pp}, resample=2, image_mean=[0.5] * 3,
                                    image_std=[0.5] * 3, do_convert_rgb=None)
    else:
        model = Siglip2Model(Siglip2Config(text_config=text, vision_config=vision)).eval()
        proc = Siglip2ImageProcessor(patch_size=vision["patch_size"], max_num_patches=pp, resample=2,
                                     image_mean=[0.5] * 3, image_std=[0.5] * 3, do_convert_rgb=None)
    model.save_pretrained(dst)
    proc.save_pretrained(dst)
    tokenizer_files(dst)
    print(f"{dst}: written")


if __name__ == "__main__":
    for n in sys.argv[1:] or list(CHECKPOINTS):
        make(n)
