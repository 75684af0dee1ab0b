"""Regenerate the tiny SigLIP 2 NaFlex (`Siglip2Model`, model_type "siglip2") fixture checkpoints and their goldens.

Python is a test oracle only. This is the NaFlex sibling of `make_fixtures.py` (FixRes) and reuses its pruned
1024-id Gemma tokenizer, its weight re-initialisation and its manifest conventions. It writes:

    tests/fixtures/models/naflex-*/              Hub-layout checkpoint (sparse config.json, model.safetensors,
                                                 tokenizer.json, tokenizer_config.json, preprocessor_config.json)
    tests/fixtures/model-inputs/naflex/*.png     input images
    tests/fixtures/goldens/naflex-*.safetensors  golden tensors (fp32 / int32 / int64), names prefixed by budget
    tests/fixtures/goldens/naflex-*.json         manifest (inputs, grids, sha256 of pixel rows, stored and
                                                 omitted tensors, sensitivities, independence checks, versions)

Deterministic (fixed seeds, torch threads = 1 via `common`). Run with the reference venv:

    python tools/reference/make_naflex_fixtures.py
"""
import common  # noqa: F401  (must be first: patches torchvision for CPU torch, sets threads)

import copy
import hashlib
import json
import math
import os
import shutil
import tempfile

import numpy as np
import PIL
import torch
import torch.nn.functional as F
import transformers
from PIL import Image
from safetensors.torch import save_file
from transformers import (
    AutoImageProcessor,
    AutoProcessor,
    Siglip2Config,
    Siglip2ImageProcessor,
    Siglip2Model,
    Siglip2TextConfig,
    Siglip2Tokenizer,
    Siglip2VisionConfig,
)
from transformers.activations import ACT2FN
from transformers.masking_utils import create_bidirectional_mask

import make_fixtures as mf

transformers.logging.set_verbosity_error()

REPO = common.REPO
MODELS = os.path.join(common.FIXTURES, "models")
INPUTS = os.path.join(common.FIXTURES, "model-inputs", "naflex")
GOLDENS = common.GOLDENS
SEQ_LEN = mf.SEQ_LEN

# 4-5 of the FixRes texts: English, UPPERCASE, Chinese, emoji (byte fallback), empty
TEXT_INDICES = [0, 1, 2, 6, 9]
TEXTS = [mf.TEXTS[i] for i in TEXT_INDICES]

# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

# (file name, width, height). MAIN is the batch order of every golden; QUIRK is run alone.
MAIN_IMAGES = [
    ("square_40x40.png", 40, 40),
    ("landscape_72x40.png", 72, 40),
    ("portrait_40x72.png", 40, 72),
    ("pixel_1x1.png", 1, 1),
    ("tiny_3x5.png", 3, 5),
    ("wide_1000x4.png", 1000, 4),  # P=4, M=256: 1 x 250 grid
    ("odd_17x23.png", 17, 23),
]
QUIRK_IMAGE = ("tall_4x1000.png", 4, 1000)  # P=4, M=256: 250 x 1 grid (PyTorch-CPU w=1 quirk)


def make_input_images():
    """Deterministic tiny RGB PNGs (gradient + noise). Returns {name: repo-relative path}."""
    os.makedirs(INPUTS, exist_ok=True)
    rs = np.random.RandomState(4321)
    out = {}
    for name, w, h in MAIN_IMAGES + [QUIRK_IMAGE]:
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) * 255 / max(w + h - 2, 1)], -1)
        sigma = 40 if w * h < 1000 else (25 if max(w, h) < 500 else 6)  # less noise in the 1000-px strips keeps the PNGs small
        arr = np.clip(base + rs.normal(0, sigma, size=base.shape), 0, 255).astype(np.uint8)
        path = os.path.join(INPUTS, name)
        Image.fromarray(arr, "RGB").save(path, format="PNG", optimize=False, compress_level=9)
        out[name] = os.path.relpath(path, REPO)
    return out


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------

FIXTURES = {
    "naflex-f32": dict(
        seed=20250611,
        text=dict(vocab_size=mf.VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=SEQ_LEN),
        vision=dict(patch_size=4, num_patches=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4),
        max_num_patches=64,
        budgets=[64, 256, 576, 1024],
        hub_like_preprocessor=True,
        weights_dtype=torch.float32,
    ),
    "naflex-grid": dict(
        seed=20250612,
        text=dict(vocab_size=mf.VOCAB_SIZE, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=SEQ_LEN, projection_size=40),
        vision=dict(patch_size=4, num_patches=64, hidden_size=40, intermediate_size=80, num_hidden_layers=2,
                    num_attention_heads=5),
        max_num_patches=256,
        budgets=[256, 1024],
        hub_like_preprocessor=False,
        # float16 on disk only to fit the size budget (the 1024x32 token table and the tokenizer alone are
        # ~260 KB per fixture); goldens are fp32 compute of the rounded weights, like fixres-f16
        weights_dtype=torch.float16,
    ),
}

# Which per-image tensors are stored: {kind: {M: "all" | [batch indices]}} (size budget: all new files
# < 1.5 MB). Everything not stored is listed in the manifest's omitted_tensors with the reason.
# Main batch indices: 0 square 8x8/16x16, 1 landscape 6x10/12x21, 2 portrait, 3 1x1, 4 3x5, 5 1000x4 (1 x 64/250),
# 6 17x23 (9x7/18x14) -- grids at M = 64/256 with P = 4.
STORE = {
    "naflex-f32": {
        "pixel_values.valid": {64: [1, 4, 5, 6]},
        "position_embeddings": {64: "all", 256: [1, 5]},
        "hidden_states": {64: [1, 3, 4, 5, 6]},
        "last_hidden_state": {64: [1, 3, 4, 5, 6]},
        "pixel_attention_mask": [64, 256],
        "quirk_position_tables": True,
    },
    "naflex-grid": {
        "pixel_values.valid": {},
        "position_embeddings": {256: [5]},
        "hidden_states": {},
        "last_hidden_state": {},
        "pixel_attention_mask": [256],
        "quirk_position_tables": False,
    },
}


@torch.no_grad()
def gelu_tail_(model, seed):
    """make_fixtures.reinit_ pins GELU-tail units for `SiglipMLP` only; do the same for `Siglip2MLP`."""
    g = torch.Generator().manual_seed(seed)

    def normal(shape, std, mean=0.0):
        return torch.randn(shape, generator=g, dtype=torch.float64).mul(std).add(mean).float()

    n = 0
    for _, mod in sorted(model.named_modules(), key=lambda kv: kv[0]):
        if type(mod).__name__ != "Siglip2MLP":
            continue
        m_int = mod.fc1.weight.shape[0]
        k = max(1, m_int // 8)
        idx = torch.randperm(m_int, generator=g)[:k].sort().values
        mod.fc1.weight[idx] *= 0.1
        mod.fc1.bias[idx] = normal((k,), 0.1, -2.7)
        mod.fc2.weight[:, idx] = normal((mod.fc2.weight.shape[0], k), 2.0)
        n += 1
    assert n == model.config.text_config.num_hidden_layers + model.config.vision_config.num_hidden_layers + 1, n


def build_model(spec):
    cfg = Siglip2Config(text_config=dict(spec["text"]), vision_config=dict(spec["vision"]))
    torch.manual_seed(spec["seed"])
    m = Siglip2Model(cfg).eval()
    mf.reinit_(m, spec["seed"])
    gelu_tail_(m, spec["seed"] + 1000)
    return m


def sparsify_config(path):
    """config.json sparse like the Hub files: drop every sub-config key equal to the Siglip2 class default."""
    with open(path) as f:
        cfg = json.load(f)
    dt = Siglip2TextConfig().to_dict()
    dv = Siglip2VisionConfig().to_dict()
    out = {}
    for k, v in cfg.items():
        if k in ("text_config", "vision_config"):
            d = dt if k == "text_config" else dv
            sub = {sk: sv for sk, sv in v.items() if sk == "model_type" or sk not in d or d[sk] != sv}
            if k == "text_config" and sub.get("projection_size") == v.get("hidden_size", 768):
                sub.pop("projection_size")
            sub.pop("dtype", None)
            sub.pop("torch_dtype", None)
            out[k] = dict(sorted(sub.items()))
        else:
            out[k] = v
    with open(path, "w") as f:
        json.dump(dict(sorted(out.items())), f, indent=2)
        f.write("\n")
    return out


# Keys of the google/siglip2-*-naflex preprocessor_config.json as written by the fast image processor of
# transformers 4.49-4.5x (image_processor_type "Siglip2ImageProcessorFast", processor_class "Siglip2Processor",
# do_convert_rgb null and the fast class's null/bookkeeping keys). NOT read from the Hub here (no network):
# taken from copies of that file in public code; transformers 5.18 maps "Siglip2ImageProcessorFast" to
# Siglip2ImageProcessor (torchvision backend), which this script checks.
HUB_LIKE_EXTRA = {
    "data_format": "channels_first",
    "default_to_square": True,
    "device": None,
    "disable_grouping": None,
    "do_convert_rgb": None,
    "do_pad": None,
    "image_processor_type": "Siglip2ImageProcessorFast",
    "input_data_format": None,
    "pad_size": None,
    "processor_class": "Siglip2Processor",
    "return_tensors": None,
}


def save_image_processor(out_dir, patch_size, max_num_patches, hub_like):
    ip = Siglip2ImageProcessor(
        patch_size=patch_size,
        max_num_patches=max_num_patches,
        resample=2,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_convert_rgb=None,
    )
    ip.save_pretrained(out_dir)
    path = os.path.join(out_dir, "preprocessor_config.json")
    with open(path) as f:
        pc = json.load(f)
    assert pc["image_processor_type"] == "Siglip2ImageProcessor" and pc["resample"] == 2
    assert pc["patch_size"] == patch_size and pc["max_num_patches"] == max_num_patches
    # transformers 5.18 leaves out do_convert_rgb (== class default None); the Hub files have it as null
    pc["do_convert_rgb"] = None
    if hub_like:
        pc.update(HUB_LIKE_EXTRA)
    with open(path, "w") as f:
        json.dump(dict(sorted(pc.items())), f, indent=2)
        f.write("\n")
    re = AutoImageProcessor.from_pretrained(out_dir)
    assert type(re).__name__ == "Siglip2ImageProcessor", type(re)
    assert re.patch_size == patch_size and re.max_num_patches == max_num_patches and re.do_convert_rgb is None
    return pc


def save_model_dir(model, out_dir, tok_dir, spec):
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    os.makedirs(out_dir)
    copy.deepcopy(model).to(spec["weights_dtype"]).save_pretrained(out_dir)
    cfg = sparsify_config(os.path.join(out_dir, "config.json"))
    for f in sorted(os.listdir(tok_dir)):
        shutil.copy(os.path.join(tok_dir, f), os.path.join(out_dir, f))
    save_image_processor(out_dir, spec["vision"]["patch_size"], spec["max_num_patches"], spec["hub_like_preprocessor"])
    re = Siglip2Config.from_pretrained(out_dir)
    for sub in ("text_config", "vision_config"):
        a = getattr(model.config, sub).to_dict()
        b = getattr(re, sub).to_dict()
        for k in ("dtype", "torch_dtype", "_name_or_path"):
            a.pop(k, None)
            b.pop(k, None)
        assert a == b, (sub, {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)})
    return cfg


# ---------------------------------------------------------------------------------------------
# Position-embedding resize: float64 re-implementation of spec §4.3 / §1.4 (the mathematically correct one)
# ---------------------------------------------------------------------------------------------

def aa_bilinear_weights(n_in, n_out):
    """(n_out, n_in) float64 matrix of the antialiased bilinear (triangle) resampler, align_corners=False."""
    scale = n_in / n_out
    fs = max(scale, 1.0)
    support = 1.0 * fs
    inv = 1.0 / fs
    w = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        center = (i + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), n_in)
        for x in range(xmin, xmax):
            t = abs((x - center + 0.5) * inv)
            w[i, x] = 1.0 - t if t < 1.0 else 0.0
        s = w[i].sum()
        if s != 0.0:
            w[i] /= s
    return w


def aa_bilinear_weights_torch_f32(n_in, n_out):
    """The same weights as torch's CPU `_compute_weights_aa<float>` computes them for a float32 input: scale,
    center, the filter argument and the normalisation in float32 (the `+ 0.5` terms are double literals in the
    C++ source, so those sums are formed in double and rounded once). Returns a list of (xmin, float32 weights)."""
    f32, f64 = np.float32, np.float64
    scale = f32(f32(n_in) / f32(n_out))
    support = scale if scale >= 1.0 else f32(1.0)
    invscale = f32(f32(1.0) / scale) if scale >= 1.0 else f32(1.0)
    rows = []
    for i in range(n_out):
        center = f32(f64(scale) * (i + 0.5))
        xmin = max(int(f64(center) - f64(support) + 0.5), 0)
        xmax = min(int(f64(center) + f64(support) + 0.5), n_in)
        ws, tot = [], f32(0.0)
        for x in range(xmin, xmax):
            a = abs(f32((f64(f32(f32(x) - center)) + 0.5) * f64(invscale)))
            wx = f32(f32(1.0) - a) if a < 1.0 else f32(0.0)
            ws.append(wx)
            tot = f32(tot + wx)
        if tot != 0.0:
            ws = [f32(wx / tot) for wx in ws]
        rows.append((xmin, ws))
    return rows


def resize_pos_torch_f32(table, h, w):
    """float32 emulation of torch's antialiased bilinear (float32 weights, float32 sequential accumulation, float32
    intermediate between the width and the height pass). Matches HF's resize to ~1 float32 ulp (not bit-exact:
    torch's vectorised accumulation order differs)."""
    t = np.asarray(table, dtype=np.float32)
    s = int(round(math.sqrt(t.shape[0])))
    grid = t.reshape(s, s, -1)

    def apply(rows, x, axis):
        x = np.moveaxis(x, axis, 0)
        out = np.zeros((len(rows),) + x.shape[1:], dtype=np.float32)
        for i, (xmin, ws) in enumerate(rows):
            acc = (x[xmin] * ws[0]).astype(np.float32)
            for j in range(1, len(ws)):
                acc = (acc + x[xmin + j] * ws[j]).astype(np.float32)
            out[i] = acc
        return np.moveaxis(out, 0, axis)

    if w != s:
        grid = apply(aa_bilinear_weights_torch_f32(s, w), grid, 1)
    if h != s:
        grid = apply(aa_bilinear_weights_torch_f32(s, h), grid, 0)
    return grid.reshape(h * w, -1)


def resize_pos_f64(table, h, w):
    """table: (N, D) learned grid (row-major, N = S*S) -> (h*w, D) float64: width pass, then height pass."""
    t = np.asarray(table, dtype=np.float64)
    s = int(round(math.sqrt(t.shape[0])))
    grid = t.reshape(s, s, -1)
    if w != s:
        grid = np.einsum("ox,rxd->rod", aa_bilinear_weights(s, w), grid)
    if h != s:
        grid = np.einsum("oy,ycd->ocd", aa_bilinear_weights(s, h), grid)
    return grid.reshape(h * w, -1)


# ---------------------------------------------------------------------------------------------
# Goldens
# ---------------------------------------------------------------------------------------------

def l2n(x):
    return x / x.norm(p=2, dim=-1, keepdim=True)


def sha256_rows(x):
    a = np.ascontiguousarray(x.detach().cpu().numpy().astype("<f4"))
    return hashlib.sha256(a.tobytes()).hexdigest()


class PosRecorder:
    """Records what `resize_positional_embeddings` returns inside the real HF forward (exact capture), or
    replaces it with a given table."""

    def __init__(self, model, replace=None):
        self.emb = model.vision_model.embeddings
        self.replace = replace
        self.calls = []

    def __enter__(self):
        orig = type(self.emb).resize_positional_embeddings

        def wrapped(positional_embeddings, spatial_shapes, max_length):
            r = orig(positional_embeddings, spatial_shapes, max_length) if self.replace is None else self.replace
            self.calls.append(r)
            return r

        self.emb.resize_positional_embeddings = wrapped
        return self

    def __exit__(self, *exc):
        del self.emb.resize_positional_embeddings


def process(proc, images, patch_size, m):
    # Siglip2Processor's call defaults (images_kwargs patch_size=16, max_num_patches=256) override the values in
    # preprocessor_config.json, so both are passed explicitly (see the manifest note).
    return proc(images=images, patch_size=patch_size, max_num_patches=m, return_tensors="pt")


@torch.no_grad()
def vision_forward(model, px, mask, ss, **kw):
    with PosRecorder(model) as rec:
        vo = model.vision_model(pixel_values=px, pixel_attention_mask=mask, spatial_shapes=ss,
                                output_hidden_states=True, **kw)
    assert len(rec.calls) == 1
    return vo, rec.calls[0]


@torch.no_grad()
def text_goldens(model, proc, model_dir):
    out = {}
    ids = proc(text=TEXTS, padding="max_length", max_length=SEQ_LEN, truncation=True, return_tensors="pt")["input_ids"]
    lt = Siglip2Tokenizer.from_pretrained(model_dir)
    ids_l = lt(TEXTS, padding="max_length", max_length=SEQ_LEN, truncation=True, return_tensors="pt")["input_ids"]
    # same tokenizer files as the FixRes fixtures: the ids must equal fixres-f32's rows for these texts
    fx = os.path.join(GOLDENS, "fixres-f32.safetensors")
    if os.path.exists(fx):
        from safetensors.torch import load_file

        ref = load_file(fx)
        assert torch.equal(ids.to(torch.int64), ref["text.input_ids"][TEXT_INDICES])
        assert torch.equal(ids_l.to(torch.int64), ref["text.input_ids_lower"][TEXT_INDICES])
    to = model.text_model(input_ids=ids)
    out["text.input_ids"] = ids.to(torch.int64)
    out["text.input_ids_lower"] = ids_l.to(torch.int64)
    out["text.pooler_output"] = to.pooler_output
    out["text.embeds"] = l2n(to.pooler_output)
    out["text_lower.embeds"] = l2n(model.get_text_features(input_ids=ids_l).pooler_output)
    out["logit_scale"] = model.logit_scale.detach().clone()
    out["logit_bias"] = model.logit_bias.detach().clone()
    return out, ids


def wanted(store, kind, m, i):
    sel = store.get(kind, {}).get(m)
    return sel == "all" or (isinstance(sel, list) and i in sel)


@torch.no_grad()
def budget_goldens(name, model, proc, images, ids, m, store, out, omitted, info):
    """Goldens of one budget M for the main batch (one processor call, one forward)."""
    P = model.config.vision_config.patch_size
    L = model.config.vision_config.num_hidden_layers
    b = process(proc, images, P, m)
    px, mask, ss = b["pixel_values"], b["pixel_attention_mask"], b["spatial_shapes"]
    assert px.shape == (len(images), m, 3 * P * P) and mask.dtype == torch.int32 and ss.dtype == torch.int64
    vo, pos = vision_forward(model, px, mask, ss)
    assert len(vo.hidden_states) == L + 1
    # hidden_states[0] is exactly patch embedding + resized position table
    emb = model.vision_model.embeddings
    assert torch.equal(vo.hidden_states[0], emb.patch_embedding(px) + pos)
    jo = model(input_ids=ids, pixel_values=px, pixel_attention_mask=mask, spatial_shapes=ss)
    assert torch.equal(jo.vision_model_output.pooler_output, vo.pooler_output)
    p = f"m{m}."
    out[p + "spatial_shapes"] = ss
    n_valid = (ss[:, 0] * ss[:, 1])[:, None]
    assert torch.equal(mask, (torch.arange(m)[None, :] < n_valid).to(torch.int32))
    if m in store.get("pixel_attention_mask", []):
        out[p + "pixel_attention_mask"] = mask
    else:
        omitted[p + "pixel_attention_mask"] = ("not stored (size budget): equals int32(arange(M) < h*w) per image "
                                               "(checked)")
    out[p + "pooler_output"] = vo.pooler_output
    out[p + "embeds"] = l2n(vo.pooler_output)
    out[p + "logits_per_image"] = jo.logits_per_image
    assert torch.allclose(jo.image_embeds, out[p + "embeds"], atol=1e-7, rtol=0)
    grids, shas = [], []
    for i in range(len(images)):
        h, w = ss[i].tolist()
        n = h * w
        grids.append([h, w])
        assert int(mask[i].sum()) == n and bool(mask[i, :n].all())
        assert bool((px[i, n:] == 0).all()), "padding rows of pixel_values must be 0.0"
        # padding rows of the resized table are copies of row 0 (spec §1.4)
        assert torch.equal(pos[i, n:], pos[i, :1].expand(m - n, -1))
        shas.append(sha256_rows(px[i, :n]))
        tensors = {
            "pixel_values.valid": px[i, :n],
            "position_embeddings": pos[i, :n],
            "last_hidden_state": vo.last_hidden_state[i, :n],
        }
        for l, hs in enumerate(vo.hidden_states):
            tensors[f"hidden_states.{l}"] = hs[i, :n]
        for k, v in tensors.items():
            kind = "hidden_states" if k.startswith("hidden_states.") else k
            key = f"{p}{k}.{i}"
            if wanted(store, kind, m, i):
                out[key] = v
            else:
                omitted[key] = OMIT_REASON[kind]
        # the resize must agree with the re-implementations (no w = 1 grid in the main batch): float64 weights
        # and sums (spec §4.3) differ from torch's float32 weights by a few float32 ulps of the table values
        table = emb.position_embedding.weight.detach()
        ref = resize_pos_f64(table, h, w)
        d64 = float((pos[i, :n].double() - torch.from_numpy(ref)).abs().max())
        d32 = float((pos[i, :n] - torch.from_numpy(resize_pos_torch_f32(table, h, w))).abs().max())
        key = f"m{m}"
        info.setdefault("float64", {})[key] = max(info.get("float64", {}).get(key, 0.0), d64)
        info.setdefault("torch_f32_emulation", {})[key] = max(info.get("torch_f32_emulation", {}).get(key, 0.0), d32)
        vmax = float(pos[i, :n].abs().max())
        assert d64 < 2e-6 * max(1.0, vmax) and d32 < 5e-7 * max(1.0, vmax), (name, m, i, d64, d32)
    return dict(grids=grids, pixel_valid_sha256=shas), (px, mask, ss)


OMIT_REASON = {
    "pixel_values.valid": "size budget: compare sha256 (budgets.mM.pixel_valid_sha256)",
    "position_embeddings": "size budget",
    "hidden_states": "size budget",
    "last_hidden_state": "size budget",
}


@torch.no_grad()
def quirk_goldens(model, proc, img, out, omitted, store):
    """The w=1 image alone at M=256: HF output (with the PyTorch-CPU quirk) and the correct resize."""
    P = model.config.vision_config.patch_size
    m = 256
    b = process(proc, [img], P, m)
    px, mask, ss = b["pixel_values"], b["pixel_attention_mask"], b["spatial_shapes"]
    h, w = ss[0].tolist()
    assert w == 1 and h not in (1, model.vision_model.embeddings.position_embedding_size), (h, w)
    vo, pos = vision_forward(model, px, mask, ss)
    n = h * w
    correct = resize_pos_f64(model.vision_model.embeddings.position_embedding.weight.detach(), h, w)
    correct_t = torch.from_numpy(correct).float()
    full = correct_t[:1].expand(m, -1).clone()
    full[:n] = correct_t
    with PosRecorder(model, replace=full.unsqueeze(0)):
        vo_c = model.vision_model(pixel_values=px, pixel_attention_mask=mask, spatial_shapes=ss)
    q = "quirk_m256."
    out[q + "spatial_shapes"] = ss
    if store.get("quirk_position_tables"):
        out[q + "position_embeddings.0"] = pos[0, :n]
        out[q + "position_embeddings_correct.0"] = correct_t
    else:
        for k in ("position_embeddings.0", "position_embeddings_correct.0"):
            omitted[q + k] = "not stored (size budget); the same check with tables is in naflex-f32"
    out[q + "pooler_output"] = vo.pooler_output
    out[q + "embeds"] = l2n(vo.pooler_output)
    out[q + "pooler_output_correct"] = vo_c.pooler_output
    out[q + "embeds_correct"] = l2n(vo_c.pooler_output)
    rows_equal_row0 = bool((pos[0, :n] == pos[0, :1]).all())
    return {
        "grid": [h, w],
        "pixel_valid_sha256": sha256_rows(px[0, :n]),
        "hf_rows_all_equal_row0": rows_equal_row0,
        "hf_row0_vs_correct_row0_maxabs": float((pos[0, 0].double() - torch.from_numpy(correct[0])).abs().max()),
        "hf_vs_correct_pos_maxabs": float((pos[0, :n].double() - torch.from_numpy(correct)).abs().max()),
        "hf_vs_correct_pooled_maxabs": float((vo.pooler_output - vo_c.pooler_output).abs().max()),
        "hf_vs_correct_embeds_maxabs": float((out[q + "embeds"] - out[q + "embeds_correct"]).abs().max()),
    }


# ---------------------------------------------------------------------------------------------
# Sensitivities (deliberate bugs) and independence checks
# ---------------------------------------------------------------------------------------------

def _resize_variant(kind):
    def fn(table_n_d, ss, m):
        n_tot, d = table_n_d.shape
        s = int(round(math.sqrt(n_tot)))
        grid = table_n_d.reshape(s, s, d)
        if kind == "transposed_table":
            grid = grid.transpose(0, 1)
        g = grid.permute(2, 0, 1).unsqueeze(0).float()
        res = torch.empty(ss.shape[0], m, d)
        for i in range(ss.shape[0]):
            h, w = ss[i].tolist()
            size = (w, h) if kind == "hw_swapped" else (h, w)
            r = F.interpolate(g, size=size, mode="bilinear", align_corners=False,
                              antialias=(kind != "no_antialias")).reshape(d, h * w).t()
            res[i, : h * w] = r
            res[i, h * w:] = 0.0 if kind == "pad_zeros" else r[0]
        return res
    return fn


@torch.no_grad()
def custom_pooled(model, px, mask, ss, resize=None, enc_mask=True, head_mask=True, patch_chw=False):
    """Pooled image output with optional deliberate bugs; equals HF exactly when no bug is selected."""
    vm = model.vision_model
    emb = vm.embeddings
    x = px
    if patch_chw:
        # bug: the (y, x, c) patch row read as (c, y, x), i.e. the FixRes conv flattening order
        b, m, k = px.shape
        p = emb.patch_size
        x = px.reshape(b, m, p, p, 3).permute(0, 1, 4, 2, 3).reshape(b, m, k)
    patch = emb.patch_embedding(x)
    if resize is None:
        table = emb.position_embedding.weight.reshape(emb.position_embedding_size, emb.position_embedding_size, -1)
        pos = emb.resize_positional_embeddings(table, ss, max_length=px.shape[1])
    else:
        pos = resize(emb.position_embedding.weight, ss, px.shape[1])
    h = patch + pos
    am = create_bidirectional_mask(config=vm.config, inputs_embeds=h, attention_mask=mask if enc_mask else None)
    h = vm.encoder(inputs_embeds=h, attention_mask=am).last_hidden_state
    h = vm.post_layernorm(h)
    return vm.head(h, mask if head_mask else None)


@torch.no_grad()
def sensitivity(name, model, batch, txt_embeds, log):
    px, mask, ss = batch
    base = custom_pooled(model, px, mask, ss)
    ref = model.vision_model(pixel_values=px, pixel_attention_mask=mask, spatial_shapes=ss).pooler_output
    assert torch.equal(base, ref), float((base - ref).abs().max())
    scale, bias = model.logit_scale.exp(), model.logit_bias
    tol = [1e-4 * max(1.0, float(base.abs().max())), 1e-5, 1e-3]

    def measure(pooled):
        e, e0 = l2n(pooled), l2n(base)
        return [float((pooled - base).abs().max()), float((e - e0).abs().max()),
                float(((e - e0) @ txt_embeds.t() * scale).abs().max())]

    def with_model(fn, **kw):
        m2 = copy.deepcopy(model)
        fn(m2)
        return measure(custom_pooled(m2, px, mask, ss, **kw))

    def set_act(m2):
        for mod in m2.modules():
            if hasattr(mod, "activation_fn"):
                mod.activation_fn = ACT2FN["gelu"]

    def set_eps(m2):
        for mod in m2.modules():
            if isinstance(mod, torch.nn.LayerNorm):
                mod.eps = 1e-5

    rows = {
        "pos resize: bilinear without antialias": measure(custom_pooled(model, px, mask, ss, resize=_resize_variant("no_antialias"))),
        "pos resize: spatial_shapes read as (w, h)": measure(custom_pooled(model, px, mask, ss, resize=_resize_variant("hw_swapped"))),
        "pos table reshaped column-major (grid transposed)": measure(custom_pooled(model, px, mask, ss, resize=_resize_variant("transposed_table"))),
        "pos padding rows zeros instead of row 0 (expected 0)": measure(custom_pooled(model, px, mask, ss, resize=_resize_variant("pad_zeros"))),
        "no key mask at all (attend to padding)": measure(custom_pooled(model, px, mask, ss, enc_mask=False, head_mask=False)),
        "key mask in MAP head only (encoder unmasked)": measure(custom_pooled(model, px, mask, ss, enc_mask=False)),
        "key mask in encoder only (MAP head unmasked)": measure(custom_pooled(model, px, mask, ss, head_mask=False)),
        "patch row read (c,y,x) not (y,x,c)": measure(custom_pooled(model, px, mask, ss, patch_chw=True)),
        "erf GELU instead of tanh GELU": with_model(set_act),
        "LayerNorm eps 1e-5 instead of 1e-6": with_model(set_eps),
    }
    cols = ["pooled", "embeds", "logits"]
    out = {}
    for k, d in rows.items():
        log(f"[{name}] sensitivity {k:52s}: " + "  ".join(
            f"{c} {v:.2e} (x{v / t:.0f})" for c, v, t in zip(cols, d, tol)))
        out[k] = {c: v for c, v in zip(cols, d)}
    return {"pooled_tolerance": tol[0], "pooled_maxabs": float(base.abs().max()), "rows": out}


@torch.no_grad()
def independence(name, model, proc, images, batches, budgets, log):
    """(a) batch composition: each image alone at the same M vs the batched run; (b) padding length: the same
    grid at a longer M (re-padded processor output, and the 1x1 image whose grid is capped at 25x25)."""
    P = model.config.vision_config.patch_size
    res = {"alone_vs_batched": {}, "repadded": {}}
    for m in budgets:
        px, mask, ss = batches[m]
        pooled = model.vision_model(pixel_values=px, pixel_attention_mask=mask, spatial_shapes=ss).pooler_output
        diffs = []
        for i, img in enumerate(images):
            b = process(proc, [img], P, m)
            assert torch.equal(b["pixel_values"][0], px[i]) and torch.equal(b["spatial_shapes"][0], ss[i])
            one = model.vision_model(**b).pooler_output
            diffs.append(float((one[0] - pooled[i]).abs().max()))
        res["alone_vs_batched"][f"m{m}"] = {"per_image_pooled_maxabs": diffs, "max": max(diffs)}
        log(f"[{name}] M={m}: single-image vs batched pooled max-abs per image {['%.2e' % d for d in diffs]}")
    # (b1) the processor output for M re-padded (zeros, mask 0) to a longer L: same grid, more padding
    m0 = budgets[0]
    px, mask, ss = batches[m0]
    pooled0 = model.vision_model(pixel_values=px, pixel_attention_mask=mask, spatial_shapes=ss).pooler_output
    for L in (256, 576, 1024):
        if L <= m0:
            continue
        pxL = torch.zeros(px.shape[0], L, px.shape[2])
        pxL[:, :m0] = px
        maskL = torch.zeros(px.shape[0], L, dtype=mask.dtype)
        maskL[:, :m0] = mask
        pL = model.vision_model(pixel_values=pxL, pixel_attention_mask=maskL, spatial_shapes=ss).pooler_output
        d = [float(x) for x in (pL - pooled0).abs().amax(-1)]
        res["repadded"][f"m{m0}_to_{L}"] = {"per_image_pooled_maxabs": d, "max": max(d)}
        log(f"[{name}] M={m0} processor output re-padded to L={L}: pooled max-abs per image {['%.2e' % x for x in d]}")
    # (b2) natural case: the 1x1 image reaches the 100x scale cap (25x25 grid at P=4) for M=1024 and M=2048
    img1 = images[[n for n, _, _ in MAIN_IMAGES].index("pixel_1x1.png")]
    b1 = process(proc, [img1], P, 1024)
    b2 = process(proc, [img1], P, 2048)
    assert torch.equal(b1["spatial_shapes"], b2["spatial_shapes"])
    p1 = model.vision_model(**b1).pooler_output
    p2 = model.vision_model(**b2).pooler_output
    res["pixel_1x1_m1024_vs_m2048"] = {"grid": b1["spatial_shapes"][0].tolist(),
                                       "pooled_maxabs": float((p1 - p2).abs().max()),
                                       "bit_identical": bool(torch.equal(p1, p2))}
    log(f"[{name}] 1x1 image, grid {b1['spatial_shapes'][0].tolist()} at M=1024 and M=2048: pooled max-abs "
        f"{float((p1 - p2).abs().max()):.2e}")
    # grids that coincide between budgets of the main batch
    same = []
    names = [n for n, _, _ in MAIN_IMAGES]
    for i in range(len(images)):
        for a in budgets:
            for c in budgets:
                if a < c and torch.equal(batches[a][2][i], batches[c][2][i]):
                    same.append({"image": names[i], "budgets": [a, c], "grid": batches[a][2][i].tolist()})
    res["same_grid_across_budgets_in_main_batch"] = same
    return res


def dumps_compact(obj, indent=2, level=0):
    """json.dumps(indent=2), except that lists of scalars (and lists of such lists) stay on one line."""
    def flat(o):
        return not isinstance(o, dict) and (not isinstance(o, list) or all(flat(x) for x in o))

    pad = " " * (indent * (level + 1))
    if flat(obj):
        return json.dumps(obj, ensure_ascii=False)
    if isinstance(obj, dict):
        items = [f"{pad}{json.dumps(str(k), ensure_ascii=False)}: {dumps_compact(v, indent, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * (indent * level) + "}" if items else "{}"
    items = [pad + dumps_compact(v, indent, level + 1) for v in obj]
    return "[\n" + ",\n".join(items) + "\n" + " " * (indent * level) + "]"


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

def main():
    log_lines = []

    def log(s):
        print(s, flush=True)
        log_lines.append(s)

    log(f"transformers {transformers.__version__}, torch {torch.__version__}, Pillow {PIL.__version__}")
    os.makedirs(MODELS, exist_ok=True)
    os.makedirs(GOLDENS, exist_ok=True)
    paths = make_input_images()
    main_rel = [paths[n] for n, _, _ in MAIN_IMAGES]
    quirk_rel = paths[QUIRK_IMAGE[0]]
    images = [Image.open(os.path.join(REPO, p)).convert("RGB") for p in main_rel]
    quirk_img = Image.open(os.path.join(REPO, quirk_rel)).convert("RGB")
    for (n, w, h), im in zip(MAIN_IMAGES + [QUIRK_IMAGE], images + [quirk_img]):
        assert im.size == (w, h), (n, im.size)

    total = 0
    tmp = tempfile.mkdtemp(prefix="siglip2-naflex-fixtures-")
    try:
        pruned = os.path.join(tmp, "pruned-tokenizer.json")
        mf.build_pruned_tokenizer_json(pruned)
        tok_dir = os.path.join(tmp, "tok")
        mf.save_fixture_tokenizer(pruned, tok_dir)

        for name, spec in FIXTURES.items():
            out_dir = os.path.join(MODELS, name)
            save_model_dir(build_model(spec), out_dir, tok_dir, spec)
            files = sorted(os.listdir(out_dir))
            model = Siglip2Model.from_pretrained(out_dir, dtype=torch.float32).eval()
            assert all(p.dtype == torch.float32 for p in model.parameters())
            proc = AutoProcessor.from_pretrained(out_dir)
            assert type(proc).__name__ == "Siglip2Processor", type(proc)
            assert type(proc.image_processor).__name__ == "Siglip2ImageProcessor", type(proc.image_processor)
            assert type(proc.tokenizer).__name__ == "GemmaTokenizer", type(proc.tokenizer)
            P = spec["vision"]["patch_size"]
            # the image processor alone uses the config's default budget; the Processor's call defaults do not
            d_ip = proc.image_processor(images=images[:1], return_tensors="pt")
            d_proc = proc(images=images[:1], return_tensors="pt")
            default_note = (
                f"AutoImageProcessor(model_dir)(images) uses preprocessor_config.json (patch_size {P}, max_num_patches "
                f"{spec['max_num_patches']}: pixel_values {list(d_ip['pixel_values'].shape)}); AutoProcessor(model_dir)"
                f"(images=...) without kwargs uses Siglip2Processor's call defaults patch_size 16 / max_num_patches 256 "
                f"instead (pixel_values {list(d_proc['pixel_values'].shape)}). Goldens pass patch_size and "
                f"max_num_patches explicitly.")
            log(f"[{name}] {default_note}")

            g, omitted, info = {}, {}, {}
            tg, ids = text_goldens(model, proc, out_dir)
            g.update(tg)
            store = STORE[name]
            budgets, batches = {}, {}
            for m in spec["budgets"]:
                budgets[f"m{m}"], batches[m] = budget_goldens(name, model, proc, images, ids, m, store, g, omitted, info)
                log(f"[{name}] M={m}: grids {budgets[f'm{m}']['grids']}")
            quirk = None
            if P == 4:
                quirk = quirk_goldens(model, proc, quirk_img, g, omitted, store)
                log(f"[{name}] quirk case {QUIRK_IMAGE[0]} M=256: {quirk}")
            sens = {}
            for m in spec["budgets"][:2]:
                sens[f"m{m}"] = sensitivity(f"{name} M={m}", model, batches[m], tg["text.embeds"], log)
            indep = independence(name, model, proc, images, batches, spec["budgets"], log)

            g = {k: v.detach().contiguous() for k, v in sorted(g.items())}
            for k, v in g.items():
                if v.is_floating_point():
                    assert v.dtype == torch.float32 and torch.isfinite(v).all(), k
            gpath = os.path.join(GOLDENS, f"{name}.safetensors")
            save_file(g, gpath, metadata={"fixture": name})
            manifest = {
                "fixture": name,
                "model_dir": os.path.relpath(out_dir, REPO),
                "model_files": files,
                "model_class": "Siglip2Model",
                "weights_dtype": str(spec["weights_dtype"]).replace("torch.", ""),
                "compute_dtype": "float32",
                "patch_size": P,
                "position_grid": [model.vision_model.embeddings.position_embedding_size] * 2,
                "preprocessor_max_num_patches": spec["max_num_patches"],
                "images": main_rel,
                "image_sizes_wh": [[w, h] for _, w, h in MAIN_IMAGES],
                "quirk_image": {"path": quirk_rel, "size_wh": [QUIRK_IMAGE[1], QUIRK_IMAGE[2]],
                                "budget": 256, **(quirk or {})} if quirk else None,
                "texts": TEXTS,
                "text_kwargs": {"padding": "max_length", "max_length": SEQ_LEN, "truncation": True},
                "processor_backend": "torchvision",
                "budgets": {k: {"max_num_patches": int(k[1:]), **v} for k, v in budgets.items()},
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "pillow": PIL.__version__,
                "tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)} for k, v in g.items()},
                "omitted_tensors": omitted,
                "sensitivity": sens,
                "independence": indep,
                "position_resize_reimplementation_vs_hf_maxabs": {
                    **info,
                    "table_maxabs": float(model.vision_model.embeddings.position_embedding.weight.detach().abs().max()),
                    "note": ("max-abs of (HF resize - re-implementation) over the valid rows of every main-batch image: "
                             "'float64' = spec §4.3 in float64; 'torch_f32_emulation' = float32 weights computed like "
                             "torch's _compute_weights_aa<float> and float32 sums (see make_naflex_fixtures.py). The "
                             "white-noise table makes weight rounding visible: a port with float64 weights needs a "
                             "position-grid tolerance of a few 1e-6 here, one with torch-style float32 weights <= 5e-7."),
                },
                "notes": {
                    "images": ("PIL.Image.open(p).convert('RGB'); AutoProcessor(model_dir)(images=<main batch>, "
                               "patch_size=P, max_num_patches=M) as ONE batch per budget (HF pads every image to M); "
                               "the w=1 quirk image is run alone (prefix quirk_m256.)"),
                    "processor_defaults": default_note,
                    "per_image_tensors": ("mM.<name>.<i> hold the VALID rows 0..h*w-1 of batch image i (h, w = "
                                          "mM.spatial_shapes[i]); padded rows are not stored"),
                    "pixel_valid_sha256": ("sha256 of the valid rows pixel_values[i, :h*w, :] as little-endian float32, "
                                           "row-major, no header"),
                    "position_embeddings": ("exact return value of Siglip2VisionEmbeddings.resize_positional_embeddings "
                                            "during the forward (valid rows; padding rows are copies of row 0, checked)"),
                    "hidden_states": ("output_hidden_states=True: index 0 = patch embedding + position (checked to be "
                                      "exactly that sum), i>=1 = output of block i before post_layernorm"),
                    "pooler_output": "un-normalised MAP-head output; mM.embeds are L2-normalised",
                    "logits_per_image": "Siglip2Model(input_ids=text.input_ids, ...) logits_per_image (B, T)",
                    "quirk": ("quirk_m256.position_embeddings.0 / pooler_output / embeds are what HF gives on PyTorch CPU "
                              "(w = 1: rows replicate row 0); *_correct are from a float64 re-implementation of the "
                              "spec §4.3 resize (rounded to float32) run through the same HF model (resize output replaced)"),
                    "text": ("text.input_ids: AutoProcessor -> GemmaTokenizer (no lowercasing); text.input_ids_lower: "
                             "Siglip2Tokenizer.from_pretrained(model_dir); both padding max_length 64, truncation"),
                    "weights": ("make_fixtures.reinit_ (O(1) statistics; tiny text pad row / text position 63 / MAP "
                                "out_proj) plus GELU-tail units in every Siglip2MLP; the 16x16 (or 8x8) position table "
                                "is N(0, 0.7^2) white noise, so resize errors show"),
                    "dtype": ("weights stored as float16; goldens are Siglip2Model.from_pretrained(model_dir, "
                              "dtype=torch.float32), i.e. fp32 compute of the rounded weights"
                              if spec["weights_dtype"] != torch.float32 else "fp32 weights, fp32 compute (CPU, 1 thread, SDPA)"),
                    "stored_per_image": {k: v for k, v in store.items()},
                    "sensitivity": ("max-abs change of pooled / embeds / logits (vs text.embeds, times exp(logit_scale)) "
                                    "for deliberate bugs, on the main batch of the first two budgets"),
                },
            }
            with open(os.path.join(GOLDENS, f"{name}.json"), "w", encoding="utf-8") as f:
                f.write(dumps_compact(manifest))
                f.write("\n")
            sz = mf.dir_size(out_dir) + os.path.getsize(gpath) + os.path.getsize(os.path.join(GOLDENS, f"{name}.json"))
            total += sz
            log(f"[{name}] model dir {mf.dir_size(out_dir)/1024:.1f} KiB, goldens {os.path.getsize(gpath)/1024:.1f} KiB, "
                f"{len(g)} tensors stored, {len(omitted)} omitted")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total += mf.dir_size(INPUTS)
    log(f"size: naflex models + inputs + goldens = {total/1024:.1f} KiB")


if __name__ == "__main__":
    main()
