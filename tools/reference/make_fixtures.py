"""Regenerate the tiny SigLIP 2 (FixRes, model_type "siglip") fixture checkpoints and their golden tensors.

Python is a test oracle only. One command rebuilds everything this script owns:

    tests/fixtures/models/<fixture>/            Hub-layout checkpoint (config.json sparse like the Hub files,
                                                model*.safetensors, tokenizer.json, tokenizer_config.json,
                                                preprocessor_config.json)
    tests/fixtures/model-inputs/*.png           input images for the model goldens
    tests/fixtures/goldens/<fixture>.safetensors golden tensors (fp32 / int64)
    tests/fixtures/goldens/<fixture>.json       manifest (inputs in order, texts, versions, notes)

Everything is deterministic (fixed seeds, torch threads = 1 via `common`). Run with the reference venv:

    python tools/reference/make_fixtures.py
"""
import common  # noqa: F401  (must be first: patches torchvision for CPU torch, sets threads)

import copy
import json
import math
import os
import shutil
import tempfile

import numpy as np
import PIL
import torch
import transformers
from PIL import Image
from safetensors.torch import save_file
from transformers import (
    AutoProcessor,
    AutoTokenizer,
    GemmaTokenizer,
    SiglipConfig,
    SiglipImageProcessor,
    SiglipModel,
    SiglipTextConfig,
    SiglipVisionConfig,
    pipeline,
)

try:
    from transformers import Siglip2Tokenizer
except ImportError:  # pragma: no cover - depends on the transformers version
    Siglip2Tokenizer = None

transformers.logging.set_verbosity_error()

REPO = common.REPO
MODELS = os.path.join(common.FIXTURES, "models")
INPUTS = os.path.join(common.FIXTURES, "model-inputs")
GOLDENS = common.GOLDENS

VOCAB_SIZE = 1024
SEQ_LEN = 64

# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

LONG_TEXT = (
    "On a quiet Sunday morning the old harbour town slowly wakes up: fishermen unload crates of silver "
    "sardines, gulls circle above the painted boats, a baker carries warm loaves across the square, and "
    "two children chase a striped cat between the market stalls while their grandmother buys lemons, "
    "olives, tomatoes and fresh basil. Later the sun climbs over the hills, the church bells ring ten "
    "times, tourists with cameras wander along the pier, and a small red ferry leaves for the island, "
    "its horn echoing against the white houses. In the afternoon a gentle wind rises, the cafe owner "
    "stacks chairs, the fishermen mend their nets, and the cat finally falls asleep on a warm stone wall."
)

TEXTS = [
    "A photo of two cats sleeping on a red sofa.",
    "A PHOTO OF TWO CATS SLEEPING ON A RED SOFA.",
    "两只猫睡在红色的沙发上。",
    "قطتان نائمتان على أريكة حمراء.",
    "लाल सोफे पर सोती हुई दो बिल्लियाँ।",
    "Две кошки спят на красном диване.",
    "🐱😴🛋️ cat nap ❤️",
    "  two  spaces\tand\nnewline ",
    "say <eos> and <start_of_turn> now",
    "",
    LONG_TEXT,
    "赤いソファの上で二匹の猫が寝ています。",
    "ΟΔΟΣ İSTANBUL Straße ÀÉÎ",
]

# Characters that become real (single-character) vocabulary entries of the pruned tokenizer, besides
# printable ASCII and "▁". Scripts NOT listed here (Arabic, Devanagari, kana, emoji, ...) go through byte
# fallback, so the fixture tokenizer exercises BPE merges, multi-script single-char tokens and byte fallback.
EXTRA_ALPHABET_TEXTS = [TEXTS[2], TEXTS[5], TEXTS[5].lower(), TEXTS[12], TEXTS[12].lower(), "❤"]

def _noise(rs, h, w, c):
    return rs.randint(0, 256, size=(h, w, c), dtype=np.uint8) if c > 1 else rs.randint(0, 256, size=(h, w), dtype=np.uint8)


def make_input_images():
    """Deterministic tiny PNGs. Returns the list of relative paths, in golden batch order."""
    os.makedirs(INPUTS, exist_ok=True)
    rs = np.random.RandomState(1234)
    imgs = []

    def add(name, im):
        path = os.path.join(INPUTS, name)
        im.save(path, format="PNG", optimize=False, compress_level=9)
        imgs.append(os.path.relpath(path, REPO))

    add("noise_32x32.png", Image.fromarray(_noise(rs, 32, 32, 3), "RGB"))
    add("noise_30x30.png", Image.fromarray(_noise(rs, 30, 30, 3), "RGB"))
    # smooth-ish gradient + noise, non-square, both orientations (W x H in the name)
    for (w, h) in [(47, 61), (61, 47)]:
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / (w - 1), yy * 255 / (h - 1), (xx + yy) * 255 / (w + h - 2)], -1)
        arr = np.clip(base + rs.normal(0, 40, size=base.shape), 0, 255).astype(np.uint8)
        add(f"noise_{w}x{h}.png", Image.fromarray(arr, "RGB"))
    add("pixel_1x1.png", Image.fromarray(np.array([[[200, 30, 90]]], dtype=np.uint8), "RGB"))
    add("grey_20x30.png", Image.fromarray(_noise(rs, 30, 20, 1), "L"))
    rgba = _noise(rs, 25, 40, 4)
    rgba[..., 3] = (np.arange(40)[None, :] * 255 // 39).astype(np.uint8)  # alpha ramp left->right
    rgba[:5, :, 3] = 0  # fully transparent top rows (PIL convert("RGB") keeps the colour)
    add("rgba_40x25.png", Image.fromarray(rgba, "RGBA"))
    pal = Image.new("P", (9, 13))
    palette = rs.randint(0, 256, size=(256 * 3,)).astype(np.uint8).tolist()
    pal.putpalette(palette)
    pal.putdata(rs.randint(0, 16, size=(9 * 13,)).tolist())
    add("palette_9x13.png", pal)
    return imgs


# ---------------------------------------------------------------------------------------------
# Pruned tokenizer
# ---------------------------------------------------------------------------------------------

def build_pruned_tokenizer_json(dst):
    """Prune the real 256k Gemma tokenizer.json to a VOCAB_SIZE-entry tokenizer with contiguous ids.

    Kept unchanged (same ids): the 217 added tokens (ids 0..216) and the 256 byte tokens (ids 217..472;
    note that the real Gemma vocabulary has "\\t" at id 226 instead of "<0x09>").
    Gemma's single characters live at ids >= 235k and would not survive a plain `id < 2048` cut (the
    result would be a byte-fallback-only tokenizer in which no merge can ever fire), so the remaining
    VOCAB_SIZE - 473 slots are filled with: an alphabet (printable ASCII, "▁", the characters of a few
    fixture texts) and then the results of the best-ranked Gemma merges whose two parts are already kept,
    in merge-rank order. These extra tokens get new ids 473.. in their original Gemma id order.
    Merges are kept (in their original order) iff both parts and the merged result are kept.
    normalizer / pre_tokenizer / decoder / post_processor / added_tokens are copied as they are.
    """
    src = common.require_gemma_tokenizer()
    with open(src, encoding="utf-8") as f:
        tj = json.load(f)
    vocab = tj["model"]["vocab"]
    merges = [m.split(" ") if isinstance(m, str) else list(m) for m in tj["model"]["merges"]]
    assert all(len(m) == 2 for m in merges)
    base = {tok: i for tok, i in vocab.items() if i < 473}
    assert len(base) == 473 and sorted(base.values()) == list(range(473))
    assert len(tj["added_tokens"]) == 217 and all(a["id"] < 217 for a in tj["added_tokens"])

    alphabet = [chr(c) for c in range(0x21, 0x7F)] + ["▁"]
    for t in EXTRA_ALPHABET_TEXTS:
        alphabet += list(t.replace(" ", "▁"))
    kept = dict(base)
    extra = []
    for ch in alphabet:
        if ch in vocab and ch not in kept:
            kept[ch] = vocab[ch]
            extra.append(ch)
    budget = VOCAB_SIZE - len(kept)
    assert budget > 0
    changed = True
    while budget > 0 and changed:
        changed = False
        for a, b in merges:
            if budget == 0:
                break
            r = a + b
            if r not in kept and a in kept and b in kept and r in vocab:
                kept[r] = vocab[r]
                extra.append(r)
                budget -= 1
                changed = True
    extra.sort(key=lambda t: vocab[t])
    new_vocab = dict(sorted(base.items(), key=lambda kv: kv[1]))
    for i, t in enumerate(extra):
        new_vocab[t] = 473 + i
    assert len(new_vocab) == VOCAB_SIZE and sorted(new_vocab.values()) == list(range(VOCAB_SIZE))
    new_merges = [f"{a} {b}" for a, b in merges if a in new_vocab and b in new_vocab and (a + b) in new_vocab]
    out = dict(tj)
    out["model"] = dict(tj["model"])
    out["model"]["vocab"] = new_vocab
    out["model"]["merges"] = new_merges
    with open(dst, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=2)
    # must load with the Rust library as is
    from tokenizers import Tokenizer

    rt = Tokenizer.from_file(dst)
    assert rt.get_vocab_size() == VOCAB_SIZE
    return {"vocab": len(new_vocab), "merges": len(new_merges), "alphabet_extra": len([t for t in extra if len(t) == 1])}


def save_fixture_tokenizer(pruned_json, out_dir):
    """Save the pruned tokenizer the way the SigLIP 2 FixRes Hub repos have it (GemmaTokenizer, no BOS, EOS)."""
    tok = GemmaTokenizer(
        tokenizer_file=pruned_json,
        add_bos_token=False,
        add_eos_token=True,
        # flags of HF's SigLIP 2 conversion script (spec §5.1); without padding_side="right" a
        # GemmaTokenizer pads on the LEFT (class default), which would move the pooled position.
        padding_side="right",
        model_input_names=["input_ids"],
        do_lower_case=True,
    )
    tok.save_pretrained(out_dir)
    # tokenizers writes tokenizer.json pretty-printed (~3x larger); re-serialise it compactly (same JSON
    # value, key order kept) to keep the repository small.
    tj_path = os.path.join(out_dir, "tokenizer.json")
    with open(tj_path, encoding="utf-8") as f:
        tj = json.load(f)
    with open(tj_path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, separators=(",", ":"))
    # transformers 5.x does not write add_bos_token/add_eos_token into tokenizer_config.json (the BOS/EOS
    # behaviour lives in tokenizer.json's post_processor); the Hub files (written by 4.49) have both keys.
    cfg_path = os.path.join(out_dir, "tokenizer_config.json")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["add_bos_token"] = False
    cfg["add_eos_token"] = True
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(dict(sorted(cfg.items())), f, indent=2, ensure_ascii=False)
        f.write("\n")
    # checks: reload through the Auto class like a user would
    re = AutoTokenizer.from_pretrained(out_dir)
    assert type(re).__name__ == "GemmaTokenizer", type(re)
    ids = re("a cat").input_ids
    assert ids[-1] == 1 and ids[0] != 2 and 2 not in ids, ids
    ids = re(["a cat"], padding="max_length", max_length=SEQ_LEN, truncation=True).input_ids[0]
    assert len(ids) == SEQ_LEN and ids[-1] == 0 and ids[0] != 0, ids
    assert re.model_input_names == ["input_ids"] and re.padding_side == "right"


def save_image_processor(out_dir, res):
    ip = SiglipImageProcessor(
        size={"height": res, "width": res},
        resample=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_convert_rgb=None,
    )
    ip.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "preprocessor_config.json")) as f:
        pc = json.load(f)
    assert pc["do_convert_rgb"] is None and pc["resample"] == 2 and pc["size"] == {"height": res, "width": res}
    assert pc["image_processor_type"] == "SiglipImageProcessor"


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------

ARCH = {
    "base": dict(
        text=dict(vocab_size=VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=SEQ_LEN),
        vision=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4),
    ),
    "odd": dict(
        text=dict(vocab_size=VOCAB_SIZE, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=SEQ_LEN, projection_size=40),
        vision=dict(image_size=30, patch_size=7, hidden_size=40, intermediate_size=80, num_hidden_layers=2,
                    num_attention_heads=5),
    ),
}


def make_config(arch, **overrides):
    t = dict(ARCH[arch]["text"])
    v = dict(ARCH[arch]["vision"])
    t.update(overrides.get("text", {}))
    v.update(overrides.get("vision", {}))
    return SiglipConfig(text_config=t, vision_config=v)


@torch.no_grad()
def reinit_(model, seed):
    """Re-initialise every parameter with O(1) statistics so that wrong math shows (see module notes)."""
    g = torch.Generator().manual_seed(seed)

    def normal(shape, std, mean=0.0):
        return torch.randn(shape, generator=g, dtype=torch.float64).mul(std).add(mean).float()

    def gain():
        return 1.0 + 0.5 * float(torch.rand((), generator=g, dtype=torch.float64))

    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if name == "logit_scale":
            new = normal(p.shape, 0.05, math.log(10.0))
        elif name == "logit_bias":
            new = normal(p.shape, 0.3, -5.0)
        elif name.endswith("token_embedding.weight"):
            new = normal(p.shape, 0.8)
        elif name.endswith("position_embedding.weight"):
            new = normal(p.shape, 0.7)
        elif name.endswith("head.probe"):
            new = normal(p.shape, 1.0)
        elif "layer_norm" in name or "layernorm" in name:
            new = normal(p.shape, 0.2, 1.0) if name.endswith("weight") else normal(p.shape, 0.2)
        elif name.endswith("weight") or name.endswith("in_proj_weight"):
            fan_in = int(np.prod(p.shape[1:]))
            new = normal(p.shape, gain() / math.sqrt(fan_in))
        elif name.endswith("bias") or name.endswith("in_proj_bias"):
            new = normal(p.shape, 0.2)
        else:
            raise AssertionError(f"unhandled parameter {name}")
        p.copy_(new)

    # --- deliberate small-variance sites, so that LayerNorm eps errors (1e-5 vs 1e-6) are visible ---
    # Text: the pad row of the token table and the last position row (position 63 is the pooled
    # position and holds <pad> for every caption shorter than 63 tokens) are tiny, so layer 0's
    # layer_norm1 sees a ~1e-4-variance vector exactly at the pooled position.
    te = model.text_model.embeddings
    te.token_embedding.weight[0] = normal(te.token_embedding.weight[0].shape, 0.01)
    te.position_embedding.weight[-1] = normal(te.position_embedding.weight[-1].shape, 0.01)
    # Vision: the MAP head's attention output is tiny (out_proj scaled down), so head.layernorm sees a
    # ~1e-4-variance vector; pooled = a + MLP(LN(a)) is still O(1).
    op = model.vision_model.head.attention.out_proj
    op.weight.mul_(0.02)
    op.bias.copy_(normal(op.bias.shape, 0.002))

    # --- GELU-tail units, so that erf-GELU vs tanh-GELU is visible well above the tolerances ---
    # The two GELUs differ by at most ~5e-4, near x = -2.7, i.e. ~1e-4 relative for typical activations.
    # In every MLP (encoder layers and MAP head) 1/8 of the hidden units get pre-activations pinned near
    # -2.7 (tiny fc1 row, fc1 bias ~ -2.7) and large fc2 columns, so the tanh/erf difference adds up
    # coherently (a few 1e-3 per MLP output) while these units contribute only ~0.05 to the output.
    for mname, mod in sorted(model.named_modules(), key=lambda kv: kv[0]):
        if type(mod).__name__ != "SiglipMLP":
            continue
        m_int = mod.fc1.weight.shape[0]
        k = max(1, m_int // 8)
        idx = torch.randperm(m_int, generator=g)[:k].sort().values
        mod.fc1.weight[idx] *= 0.1
        mod.fc1.bias[idx] = normal((k,), 0.1, -2.7)
        mod.fc2.weight[:, idx] = normal((mod.fc2.weight.shape[0], k), 2.0)


def sparsify_config(path):
    """Make config.json sparse like the Hub files: drop every sub-config key equal to the class default."""
    with open(path) as f:
        cfg = json.load(f)
    dt = SiglipTextConfig().to_dict()
    dv = SiglipVisionConfig().to_dict()
    out = {}
    for k, v in cfg.items():
        if k in ("text_config", "vision_config"):
            d = dt if k == "text_config" else dv
            sub = {}
            for sk, sv in v.items():
                if sk == "model_type" or sk not in d or d[sk] != sv:
                    sub[sk] = sv
            # projection_size defaults to hidden_size (resolved in __post_init__)
            if k == "text_config" and sub.get("projection_size") == v.get("hidden_size", 768):
                sub.pop("projection_size")
            # sub-config dtype is redundant with the top-level one
            sub.pop("dtype", None)
            sub.pop("torch_dtype", None)
            out[k] = dict(sorted(sub.items()))
        else:
            out[k] = v
    with open(path, "w") as f:
        json.dump(dict(sorted(out.items())), f, indent=2)
        f.write("\n")
    return out


def save_model_dir(model, out_dir, dtype, tok_dir, res, max_shard_size=None):
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    m = copy.deepcopy(model).to(dtype)
    kwargs = {}
    if max_shard_size is not None:
        kwargs["max_shard_size"] = max_shard_size
    m.save_pretrained(out_dir, **kwargs)
    cfg = sparsify_config(os.path.join(out_dir, "config.json"))
    for f in sorted(os.listdir(tok_dir)):
        shutil.copy(os.path.join(tok_dir, f), os.path.join(out_dir, f))
    save_image_processor(out_dir, res)
    # the sparse config must round-trip to the same architecture
    re = SiglipConfig.from_pretrained(out_dir)
    for sub in ("text_config", "vision_config"):
        a = getattr(model.config, sub).to_dict()
        b = getattr(re, sub).to_dict()
        for k in ("dtype", "torch_dtype", "_name_or_path"):
            a.pop(k, None)
            b.pop(k, None)
        assert a == b, (sub, {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)})
    return cfg


# ---------------------------------------------------------------------------------------------
# Goldens
# ---------------------------------------------------------------------------------------------

def l2n(x):
    return x / x.norm(p=2, dim=-1, keepdim=True)


@torch.no_grad()
def compute_goldens(model_dir, images_rel, texts, with_pil=False, with_zero_shot=False):
    model = SiglipModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    proc = AutoProcessor.from_pretrained(model_dir)
    assert type(proc.image_processor).__name__ == "SiglipImageProcessor", type(proc.image_processor)
    assert type(proc.tokenizer).__name__ == "GemmaTokenizer", type(proc.tokenizer)
    pil_images = [Image.open(os.path.join(REPO, p)).convert("RGB") for p in images_rel]
    px = proc(images=pil_images, return_tensors="pt")["pixel_values"]
    tk = proc(text=texts, padding="max_length", max_length=SEQ_LEN, truncation=True, return_tensors="pt")
    assert list(tk.keys()) == ["input_ids"], list(tk.keys())
    ids = tk["input_ids"]
    # the raw tokenizer.json (Rust `tokenizers`, no transformers wrapper) gives the same ids: what a port
    # that implements tokenizer.json must reproduce (truncate content to 63, EOS via post_processor, pad 0)
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    for t, row in zip(texts, ids.tolist()):
        r = raw.encode(t).ids
        r = (r[:-1][: SEQ_LEN - 1] + [1]) if r and r[-1] == 1 else None
        assert r is not None and r + [0] * (SEQ_LEN - len(r)) == row, (t, r, row)
    out = {}
    notes = {}
    out["image.pixel_values"] = px

    vo = model.vision_model(pixel_values=px, output_hidden_states=True)
    Lv = model.config.vision_config.num_hidden_layers
    assert len(vo.hidden_states) == Lv + 1
    for i, h in enumerate(vo.hidden_states):
        out[f"image.hidden_states.{i}"] = h
    assert torch.equal(model.vision_model.post_layernorm(vo.hidden_states[-1]), vo.last_hidden_state)
    out["image.last_hidden_state"] = vo.last_hidden_state
    out["image.pooler_output"] = vo.pooler_output
    gi = model.get_image_features(pixel_values=px)
    assert torch.equal(gi.pooler_output, vo.pooler_output)
    out["image.embeds"] = l2n(vo.pooler_output)

    out["text.input_ids"] = ids.to(torch.int64)
    to = model.text_model(input_ids=ids, output_hidden_states=True)
    Lt = model.config.text_config.num_hidden_layers
    assert len(to.hidden_states) == Lt + 1
    for i, h in enumerate(to.hidden_states):
        out[f"text.hidden_states.{i}"] = h
    assert torch.equal(model.text_model.final_layer_norm(to.hidden_states[-1]), to.last_hidden_state)
    out["text.last_hidden_state"] = to.last_hidden_state
    out["text.pooler_output"] = to.pooler_output
    gt = model.get_text_features(input_ids=ids)
    assert torch.equal(gt.pooler_output, to.pooler_output)
    out["text.embeds"] = l2n(to.pooler_output)

    # lowercasing tokenizer class on the same files
    if Siglip2Tokenizer is None:
        notes["input_ids_lower"] = "transformers has no Siglip2Tokenizer; not generated"
    else:
        lt = Siglip2Tokenizer.from_pretrained(model_dir)
        ids_l = lt(texts, padding="max_length", max_length=SEQ_LEN, truncation=True, return_tensors="pt")["input_ids"]
        out["text.input_ids_lower"] = ids_l.to(torch.int64)
        out["text_lower.embeds"] = l2n(model.get_text_features(input_ids=ids_l).pooler_output)
        notes["input_ids_lower"] = (
            "Siglip2Tokenizer.from_pretrained(model_dir) on the same tokenizer files (class overridden; "
            "it prepends a Lowercase normalizer; padding_side/model_input_names come from tokenizer_config.json)"
        )

    jo = model(input_ids=ids, pixel_values=px)
    out["logits_per_image"] = jo.logits_per_image
    out["logits_per_text"] = jo.logits_per_text
    out["probs_per_image"] = torch.sigmoid(jo.logits_per_image)
    out["logit_scale"] = model.logit_scale.detach().clone()
    out["logit_bias"] = model.logit_bias.detach().clone()
    assert torch.allclose(jo.image_embeds, out["image.embeds"], atol=0, rtol=0) or torch.allclose(
        jo.image_embeds, out["image.embeds"], atol=1e-7
    )

    if with_pil:
        pp = AutoProcessor.from_pretrained(model_dir, backend="pil")
        assert type(pp.image_processor).__name__ == "SiglipImageProcessorPil", type(pp.image_processor)
        pxp = pp(images=pil_images, return_tensors="pt")["pixel_values"]
        out["image_pil.pixel_values"] = pxp
        out["image_pil.embeds"] = l2n(model.get_image_features(pixel_values=pxp).pooler_output)
        notes["image_pil"] = (
            "AutoProcessor.from_pretrained(model_dir, backend='pil') -> SiglipImageProcessorPil; "
            f"max |pil - torchvision| pixel diff = {float((pxp - px).abs().max()):.6g}"
        )

    zero_shot = None
    if with_zero_shot:
        zero_shot = zero_shot_case(model, model_dir, proc, images_rel, out)

    out = {k: v.detach().contiguous() for k, v in out.items()}
    for k, v in out.items():
        if v.is_floating_point():
            assert v.dtype == torch.float32, k
            assert torch.isfinite(v).all(), k
    return out, notes, zero_shot, model, px, ids


ZS_LABELS = ["cat", "dog", "a red car", "ein Haus"]
ZS_TEMPLATE = "This is a photo of {}."


@torch.no_grad()
def zero_shot_case(model, model_dir, proc, images_rel, out):
    # direct computation exactly like the pipeline: per image, processor(images=[img]), texts from the
    # template with padding="max_length", max_length=64, truncation=True, logits_per_image, sigmoid.
    seqs = [ZS_TEMPLATE.format(x) for x in ZS_LABELS]
    tids = proc.tokenizer(seqs, padding="max_length", max_length=SEQ_LEN, truncation=True, return_tensors="pt")["input_ids"]
    logits = []
    for p in images_rel:
        img = Image.open(os.path.join(REPO, p)).convert("RGB")
        px1 = proc.image_processor(images=[img], return_tensors="pt")["pixel_values"]
        logits.append(model(input_ids=tids, pixel_values=px1).logits_per_image[0])
    logits = torch.stack(logits)
    probs_direct = torch.sigmoid(logits)
    # the real pipeline, offline on the local directory
    how = "direct"
    try:
        clf = pipeline("zero-shot-image-classification", model=model_dir, dtype=torch.float32)
        res = clf([os.path.join(REPO, p) for p in images_rel], candidate_labels=ZS_LABELS, hypothesis_template=ZS_TEMPLATE)
        pp = torch.tensor([[next(r["score"] for r in rows if r["label"] == lab) for lab in ZS_LABELS] for rows in res],
                          dtype=torch.float64)
        diff = float((pp - probs_direct.double()).abs().max())
        assert diff < 1e-6, diff
        probs = pp.float()
        how = f"pipeline (offline, local dir); max |pipeline - direct| = {diff:.3g}"
    except Exception as e:  # noqa: BLE001
        probs = probs_direct
        how = f"direct computation (pipeline failed: {type(e).__name__}: {e})"
    out["zeroshot.input_ids"] = tids.to(torch.int64)
    out["zeroshot.logits"] = logits
    out["zeroshot.probs"] = probs
    return {
        "labels": ZS_LABELS,
        "template": ZS_TEMPLATE,
        "images": images_rel,
        "tensors": ["zeroshot.input_ids", "zeroshot.logits", "zeroshot.probs"],
        "source": how,
        "logits_source": "direct model computation identical to ZeroShotImageClassificationPipeline "
                         "(per-image processor call, logits_per_image); the pipeline only exposes sigmoid scores",
    }


# ---------------------------------------------------------------------------------------------
# Sanity / sensitivity
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def forward_all(model, px, ids, text_mask=None, eos_pool=False, patch_hwc=False):
    """pooled image/text, normalised embeds and logits_per_image, optionally with a deliberate bug."""
    vm = model.vision_model
    if patch_hwc:
        # bug: patches flattened (row, col, channel) against the (channel, row, col) conv weight layout
        emb = vm.embeddings
        w = emb.patch_embedding.weight
        d, c, p, _ = w.shape
        w_bug = w.reshape(d, p, p, c).permute(0, 3, 1, 2)
        x = torch.nn.functional.conv2d(px, w_bug, emb.patch_embedding.bias, stride=p).flatten(2).transpose(1, 2)
        x = x + emb.position_embedding(emb.position_ids)
        h = vm.encoder(inputs_embeds=x).last_hidden_state
        img = vm.head(vm.post_layernorm(h))
    else:
        img = model.get_image_features(pixel_values=px).pooler_output
    tm = model.text_model
    if eos_pool:
        # bug: pool at the first <eos> instead of the last position
        last = tm(input_ids=ids).last_hidden_state
        pos = (ids == 1).int().argmax(-1)
        txt = tm.head(last[torch.arange(ids.shape[0]), pos])
    elif text_mask is not None:
        txt = tm(input_ids=ids, attention_mask=text_mask).pooler_output
    else:
        txt = tm(input_ids=ids).pooler_output
    ie, te = l2n(img), l2n(txt)
    logits = (te @ ie.t() * model.logit_scale.exp() + model.logit_bias).t()
    return img, txt, ie, te, logits


@torch.no_grad()
def sensitivity_report(name, model, px, ids, log):
    """How far typical porting bugs move the outputs, in units of the spec §7.2 tolerances."""
    base = forward_all(model, px, ids)
    tol = [1e-4 * max(1.0, float(base[0].abs().max())), 1e-4 * max(1.0, float(base[1].abs().max())), 1e-5, 1e-5, 1e-3]

    def measure(res):
        return [float((x - y).abs().max()) for x, y in zip(res, base)]

    def variant(fn, **kw):
        m = copy.deepcopy(model)
        fn(m)
        return measure(forward_all(m, px, ids, **kw))

    def set_act(m, act):
        for mod in m.modules():
            if hasattr(mod, "activation_fn"):
                mod.activation_fn = act

    def set_eps(m, eps):
        for mod in m.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.eps = eps

    from transformers.activations import ACT2FN

    rows = {
        "erf GELU instead of tanh GELU": variant(lambda m: set_act(m, ACT2FN["gelu"])),
        "LayerNorm eps 1e-5 instead of 1e-6": variant(lambda m: set_eps(m, 1e-5)),
        "no position embedding": variant(lambda m: [
            m.vision_model.embeddings.position_embedding.weight.zero_(),
            m.text_model.embeddings.position_embedding.weight.zero_()]),
        "patch flattened (row,col,ch) not (ch,row,col)": variant(lambda m: None, patch_hwc=True),
        "text key-padding mask applied": variant(lambda m: None, text_mask=(ids != 0).long()),
        "text pooled at first <eos>, not last pos": variant(lambda m: None, eos_pool=True),
        "fp16-rounded weights (fp32 compute)": variant(lambda m: [p.copy_(p.half().float()) for p in m.parameters()]),
        "bf16-rounded weights (fp32 compute)": variant(lambda m: [p.copy_(p.bfloat16().float()) for p in m.parameters()]),
    }
    log(f"[{name}] pooled max-abs: image {float(base[0].abs().max()):.3f}, text {float(base[1].abs().max()):.3f}; "
        f"tolerances (spec 7.2): pooled {tol[0]:.1e}/{tol[1]:.1e}, embeds 1e-5, logits 1e-3")
    cols = ["image_pooled", "text_pooled", "image_embeds", "text_embeds", "logits"]
    out = {}
    for k, d in rows.items():
        log(f"[{name}] sensitivity {k:46s}: " + "  ".join(
            f"{c} {v:.2e} (x{v / t:.0f})" for c, v, t in zip(cols, d, tol) if v > 0))
        out[k] = {c: v for c, v in zip(cols, d)}
    return out


def activation_report(name, g, log):
    parts = []
    for k in sorted(g):
        if ("hidden_states" in k or "pooler" in k or "last_hidden" in k or k.startswith("logits")) and g[k].is_floating_point():
            parts.append(f"{k}={float(g[k].abs().max()):.2f}")
    log(f"[{name}] max-abs: " + ", ".join(parts))


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

FIXTURES = [
    # name, architecture (weights shared per architecture), saved dtype, max_shard_size
    ("fixres-f32", "base", torch.float32, None),
    ("fixres-f16", "base", torch.float16, None),
    ("fixres-bf16", "base", torch.bfloat16, None),
    ("fixres-sharded", "base", torch.float32, "150KB"),
    ("fixres-odd", "odd", torch.float32, None),
]
SEEDS = {"base": 20250601, "odd": 20250602}
# What each fixture's golden file stores (size budget). fixres-f32 stores everything. The (T, 64, Dt) text
# hidden states are by far the largest tensors and are stored for fixres-f32 only. Tensors that are
# bit-identical to fixres-f32's (checked by this script) are not repeated; the manifest says so.
SHARDED_KEEP = ("text.input_ids", "image.pooler_output", "image.embeds", "text.pooler_output", "text.embeds",
                "text_lower.embeds", "logits_per_image", "logits_per_text", "probs_per_image", "logit_scale",
                "logit_bias")


def select_goldens(name, g, ref):
    """Return (tensors to store, {omitted name: reason})."""
    omitted = {}
    keep = dict(g)

    def drop(k, why):
        if k in keep:
            del keep[k]
            omitted[k] = why

    if name == "fixres-f32":
        return keep, omitted
    for k in sorted(g):
        if k.startswith("text.hidden_states."):
            drop(k, "not stored (size budget); see fixres-f32 for per-layer text goldens")
    if name in ("fixres-f16", "fixres-bf16"):
        drop("text.last_hidden_state", "not stored (size budget)")
    if name != "fixres-odd":
        for k in ("image.pixel_values", "text.input_ids_lower"):
            assert torch.equal(g[k], ref[k]), (name, k)
            drop(k, "bit-identical to fixres-f32 (same processor / tokenizer): use fixres-f32.safetensors")
    if name == "fixres-sharded":
        for k in sorted(g):
            assert torch.equal(g[k], ref[k]), (name, k)  # same fp32 weights => bit-identical outputs
            if k not in SHARDED_KEEP:
                drop(k, "bit-identical to fixres-f32 (same fp32 weights): use fixres-f32.safetensors")
    return keep, omitted


def dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def main():
    log_lines = []

    def log(s):
        print(s, flush=True)
        log_lines.append(s)

    log(f"transformers {transformers.__version__}, torch {torch.__version__}, Pillow {PIL.__version__}")
    os.makedirs(MODELS, exist_ok=True)
    os.makedirs(GOLDENS, exist_ok=True)
    images_rel = make_input_images()
    with open(os.path.join(INPUTS, "texts.json"), "w", encoding="utf-8") as f:
        json.dump(TEXTS, f, ensure_ascii=False, indent=2)
        f.write("\n")

    tmp = tempfile.mkdtemp(prefix="siglip2-fixtures-")
    try:
        pruned = os.path.join(tmp, "pruned-tokenizer.json")
        tinfo = build_pruned_tokenizer_json(pruned)
        log(f"pruned tokenizer: {tinfo}")
        tok_dir = os.path.join(tmp, "tok")
        save_fixture_tokenizer(pruned, tok_dir)

        models = {}
        for arch, seed in SEEDS.items():
            torch.manual_seed(seed)
            m = SiglipModel(make_config(arch)).eval()
            reinit_(m, seed)
            models[arch] = m

        ref_goldens = None
        for name, arch, dtype, shard in FIXTURES:
            out_dir = os.path.join(MODELS, name)
            res = ARCH[arch]["vision"]["image_size"]
            save_model_dir(models[arch], out_dir, dtype, tok_dir, res, max_shard_size=shard)
            files = sorted(os.listdir(out_dir))
            if shard:
                n_shards = len([f for f in files if f.startswith("model-") and f.endswith(".safetensors")])
                assert n_shards >= 3 and "model.safetensors.index.json" in files, files
            is_f32 = name == "fixres-f32"
            g, notes, zs, model, px, ids = compute_goldens(
                out_dir, images_rel, TEXTS, with_pil=is_f32, with_zero_shot=is_f32
            )
            activation_report(name, g, log)
            sens = None
            if name in ("fixres-f32", "fixres-odd"):
                sens = sensitivity_report(name, model, px, ids, log)
            # fp16/bf16 goldens are fp32 compute of the rounded weights; show how far they are from fp32
            if dtype != torch.float32:
                ref = SiglipModel.from_pretrained(os.path.join(MODELS, "fixres-f32"), dtype=torch.float32).eval()
                with torch.no_grad():
                    r = ref(input_ids=ids, pixel_values=px)
                log(f"[{name}] max |logits - fp32 fixture logits| = {float((g['logits_per_image'] - r.logits_per_image).abs().max()):.3e}")
            if name == "fixres-f32":
                ref_goldens = g
            g_all = g
            g, omitted = select_goldens(name, g_all, ref_goldens)
            save_file(g, os.path.join(GOLDENS, f"{name}.safetensors"), metadata={"fixture": name})
            manifest = {
                "fixture": name,
                "model_dir": os.path.relpath(out_dir, REPO),
                "model_files": files,
                "weights_dtype": str(dtype).replace("torch.", ""),
                "compute_dtype": "float32",
                "images": images_rel,
                "image_sizes_wh": [list(Image.open(os.path.join(REPO, p)).size) for p in images_rel],
                "image_modes": [Image.open(os.path.join(REPO, p)).mode for p in images_rel],
                "texts": TEXTS,
                "text_kwargs": {"padding": "max_length", "max_length": SEQ_LEN, "truncation": True},
                "processor_backend": "torchvision",
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "pillow": PIL.__version__,
                "tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)} for k, v in sorted(g.items())},
                "omitted_tensors": omitted,
                "notes": {
                    "images": "PIL.Image.open(p).convert('RGB'), then AutoProcessor(model_dir) on the whole list as one batch",
                    "texts": "AutoProcessor(model_dir) -> GemmaTokenizer (no lowercasing, no BOS, EOS appended, right padding with 0)",
                    "hidden_states": "output_hidden_states=True: index 0 = embeddings (patch/token + position), i>=1 = output of block i before the final/post LayerNorm",
                    "pooler_output": "un-normalised (get_image_features / get_text_features .pooler_output); *.embeds are L2-normalised",
                    "tokenizer": (f"pruned real Gemma tokenizer, {VOCAB_SIZE} ids: ids 0..472 as in Gemma (217 added tokens, "
                                  "256 byte tokens; id 226 is '\\t', not <0x09>), then an alphabet (printable ASCII, '▁', "
                                  "chars of the Chinese/Russian/Greek texts) and best-ranked merge results, renumbered "
                                  "from 473; Arabic/Hindi/kana/emoji go through byte fallback. Saved by "
                                  "GemmaTokenizer.save_pretrained (+ add_bos_token/add_eos_token keys like the Hub)"),
                    "weights": ("random weights re-initialised with O(1) statistics (linear/conv N(0, (1..1.5)^2/fan_in), biases N(0, 0.2^2), "
                                "LayerNorm 1+N(0, 0.2^2) / N(0, 0.2^2), token/position/probe N(0, 0.8^2/0.7^2/1)); the text pad-token row, "
                                "text position row 63 and the vision MAP-head out_proj are tiny so LayerNorm eps errors show; 1/8 of the "
                                "units of every MLP sit at pre-activation ~-2.7 with large fc2 columns so erf-vs-tanh GELU shows"),
                    "dtype": ("goldens computed by SiglipModel.from_pretrained(model_dir, dtype=torch.float32), i.e. fp32 compute of the rounded weights"
                              if dtype != torch.float32 else "fp32 weights, fp32 compute (CPU, 1 thread, SDPA attention)"),
                    **notes,
                },
            }
            if zs:
                manifest["zero_shot"] = zs
            if sens:
                manifest["sensitivity_pooled_maxabs"] = sens
            with open(os.path.join(GOLDENS, f"{name}.json"), "w", encoding="utf-8") as f:
                json.dump(manifest, f, ensure_ascii=False, indent=2)
                f.write("\n")
            log(f"[{name}] model dir {dir_size(out_dir)/1024:.1f} KiB, goldens {os.path.getsize(os.path.join(GOLDENS, name + '.safetensors'))/1024:.1f} KiB, files {files}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    mine = dir_size(MODELS) + dir_size(INPUTS) + sum(
        os.path.getsize(os.path.join(GOLDENS, f"{n}.{e}")) for n, *_ in FIXTURES for e in ("safetensors", "json")
    )
    log(f"size: models+model-inputs+model goldens = {mine/1024:.1f} KiB; all of tests/fixtures = {dir_size(common.FIXTURES)/1024:.1f} KiB")


if __name__ == "__main__":
    main()
