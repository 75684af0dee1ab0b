"""Goldens for NaFlex preprocessing and the position-embedding grid resize (spec §1.4, §4.5),
for tests/naflex-preprocess.test.ts.

Python is the oracle only. Everything stored here comes from transformers 5.x itself
(`get_image_size_for_max_num_patches`, `Siglip2ImageProcessor` (torchvision backend) and
`Siglip2ImageProcessorPil`, `Siglip2VisionEmbeddings.resize_positional_embeddings`), except the
float64 "mathematically correct" position-grid reference, which is an independent
transcription of the spec formula (no torch) used to check the non-quirk mode.

Writes:
  tests/fixtures/goldens/naflex-preprocess.safetensors
  tests/fixtures/goldens/naflex-preprocess.json   (manifest of all cases)

Source images are stored in the safetensors file (uint8 HWC) rather than as PNGs: they are
fed to HF as PIL images made from the same arrays (lossless). Large pixel_values are stored as
the SHA-256 of their raw little-endian float32 bytes (valid rows only, (n, 3·P·P) row-major).
"""
import common  # noqa: F401  (must be first: patches torchvision for CPU torch)

import hashlib
import json
import math
import os

import numpy as np
import torch
import transformers
from PIL import Image
from safetensors.numpy import save_file
from transformers.models.siglip2 import image_processing_siglip2 as ips2
from transformers.models.siglip2.image_processing_pil_siglip2 import Siglip2ImageProcessorPil
from transformers.models.siglip2.image_processing_siglip2 import Siglip2ImageProcessor
from transformers.models.siglip2.modeling_siglip2 import Siglip2VisionEmbeddings

transformers.logging.set_verbosity_error()

rng = np.random.default_rng(20250711)
tensors: dict[str, np.ndarray] = {}
manifest: dict = {"target_sizes": {"row": "[height, width, patch_size, max_num_patches, target_height, "
                                                  "target_width]", "spec_table": [], "random": []}, "images": {}, "processor": [], "configs": [], "position": {}}

# Cases whose valid pixel_values are stored in full (the others: SHA-256 only).
STORED_PV = {("tiny_3x5", '{"max_num_patches": 64, "patch_size": 4}'),
             ("extreme_4x1000", '{"max_num_patches": 64, "patch_size": 4}'),
             ("landscape_40x72", '{"do_normalize": false, "max_num_patches": 64, "patch_size": 4}')}


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def put(name: str, a: np.ndarray) -> str:
    assert name not in tensors, name
    tensors[name] = np.ascontiguousarray(a)
    return name


# --------------------------------------------------------------------------------------
# (1) target sizes: HF's own get_image_size_for_max_num_patches
# --------------------------------------------------------------------------------------
SPEC_TABLE = [(224, 224), (480, 640), (640, 480), (1080, 1920), (768, 1024), (1000, 333), (17, 23), (1, 1),
              (32, 32), (16, 4000), (4000, 16), (300, 1), (37, 900), (300, 200)]
for (h, w) in SPEC_TABLE:
    for m in (256, 1024):
        th, tw = ips2.get_image_size_for_max_num_patches(h, w, 16, m)
        manifest["target_sizes"]["spec_table"].append([h, w, 16, m, int(th), int(tw)])
# The PIL module carries its own copy of the function: check it agrees.
from transformers.models.siglip2 import image_processing_pil_siglip2 as ipp2  # noqa: E402

assert all((th, tw) == ipp2.get_image_size_for_max_num_patches(h, w, p, m)
           for (h, w, p, m, th, tw) in manifest["target_sizes"]["spec_table"])

for i in range(300):
    if i < 100:  # log-uniform sizes reach the small and extreme aspect ratios more often
        h = int(round(math.exp(rng.uniform(0, math.log(5000)))))
        w = int(round(math.exp(rng.uniform(0, math.log(5000)))))
    else:
        h = int(rng.integers(1, 5001))
        w = int(rng.integers(1, 5001))
    p = int(rng.choice([4, 14, 16]))
    m = int(rng.choice([64, 256, 576, 784, 1024]))
    th, tw = ips2.get_image_size_for_max_num_patches(h, w, p, m)
    assert (th, tw) == ipp2.get_image_size_for_max_num_patches(h, w, p, m)
    manifest["target_sizes"]["random"].append([h, w, p, m, int(th), int(tw)])


# --------------------------------------------------------------------------------------
# (2) full processor outputs, both backends
# --------------------------------------------------------------------------------------
def photo_like(h: int, w: int, noise: int = 8) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / max(w, 1) * 3.1 + y / max(h, 1) * 1.3)
    g = 128 + 90 * np.cos(y / max(h, 1) * 4.2) * np.sin(x / max(w, 1) * 2.0 + 0.5)
    b = 60 + 150 * ((x - w * 0.6) ** 2 + (y - h * 0.4) ** 2 < (min(h, w) * 0.3) ** 2)
    b = b + 30 * (np.floor(x / 3) % 2)
    img = np.stack([r, g, b], axis=-1) + rng.integers(-noise, noise + 1, size=(h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def noise(h: int, w: int) -> np.ndarray:
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


IMAGES = {
    "square_48x48": photo_like(48, 48),
    "landscape_40x72": noise(40, 72),
    "portrait_72x40": photo_like(72, 40),
    "px_1x1": np.array([[[200, 17, 99]]], dtype=np.uint8),
    "tiny_3x5": noise(3, 5),
    "extreme_4x1000": noise(4, 1000),
    "extreme_1000x4": photo_like(1000, 4),
    "exact_32x64": noise(32, 64),  # already a multiple of 16: used with do_resize off
}
for name, arr in IMAGES.items():
    manifest["images"][name] = {"height": int(arr.shape[0]), "width": int(arr.shape[1]),
                                "key": put(f"image/{name}", arr)}

PROCESSORS = {"torch": Siglip2ImageProcessor, "pil": Siglip2ImageProcessorPil}
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def run_processor(backend: str, arr: np.ndarray, init: dict, call: dict) -> dict:
    proc = PROCESSORS[backend](**init)
    assert proc.backend == ("torchvision" if backend == "torch" else "pil")
    out = proc(images=Image.fromarray(arr), return_tensors="np", **call)
    pv = np.asarray(out["pixel_values"])
    mask = np.asarray(out["pixel_attention_mask"])
    ss = np.asarray(out["spatial_shapes"])
    assert pv.shape[0] == 1 and mask.shape[0] == 1 and ss.shape == (1, 2), (pv.shape, mask.shape, ss.shape)
    pv, mask = pv[0], mask[0]
    gh, gw = int(ss[0, 0]), int(ss[0, 1])
    n = gh * gw
    budget = call.get("max_num_patches", init.get("max_num_patches", 256))
    p = init.get("patch_size", 16)
    assert pv.shape == (budget, 3 * p * p), pv.shape
    assert pv.dtype == np.float32, pv.dtype
    assert mask.dtype == np.int32 and (mask[:n] == 1).all() and (mask[n:] == 0).all()
    assert (pv[n:] == 0).all(), "padding rows are zero"
    valid = pv[:n].astype("<f4")
    case = {"spatial_shapes": [gh, gw], "mask_sum": int(mask.sum()), "pixel_values_shape": list(pv.shape),
            "sha256": sha(valid)}
    return case, valid


CASES = []
for name in ["square_48x48", "landscape_40x72", "portrait_72x40", "px_1x1", "tiny_3x5", "extreme_4x1000",
             "extreme_1000x4"]:
    for p in (4, 16):
        for m in (64, 256):
            CASES.append((name, {"patch_size": p, "max_num_patches": m}, {}, "default"))
# larger budgets and a budget passed at call time (the Siglip2Processor call default path)
CASES.append(("square_48x48", {"patch_size": 16}, {"max_num_patches": 1024}, "call-budget"))
CASES.append(("extreme_4x1000", {"patch_size": 16, "max_num_patches": 1024}, {}, "default"))
CASES.append(("portrait_72x40", {"patch_size": 14, "max_num_patches": 576}, {}, "default"))
# non-0.5 normalisation (fused torchvision recipe vs two-step PIL recipe)
CASES.append(("landscape_40x72", {"patch_size": 16, "max_num_patches": 64, "image_mean": CLIP_MEAN,
                                  "image_std": CLIP_STD}, {}, "clip-norm"))
CASES.append(("landscape_40x72", {"patch_size": 4, "max_num_patches": 64, "do_normalize": False}, {},
              "no-normalize"))
# no resize: the image is patchified as is
CASES.append(("exact_32x64", {"patch_size": 16, "max_num_patches": 16, "do_resize": False}, {}, "no-resize"))

for (name, init, call, tag) in CASES:
    arr = IMAGES[name]
    for backend in ("torch", "pil"):
        case, valid = run_processor(backend, arr, init, call)
        case.update({"image": name, "backend": backend, "init": init, "call": call, "tag": tag})
        if (name, json.dumps(init, sort_keys=True)) in STORED_PV:
            key = f"pv/{name}/{json.dumps(init, sort_keys=True)}/{json.dumps(call, sort_keys=True)}/{backend}"
            case["key"] = put(key, valid)
        manifest["processor"].append(case)

# Backend agreement (informational).
by = {}
for c in manifest["processor"]:
    by.setdefault((c["image"], json.dumps(c["init"], sort_keys=True), json.dumps(c["call"], sort_keys=True)), {})[
        c["backend"]] = c
manifest["backends_identical"] = sum(1 for v in by.values() if v["torch"]["sha256"] == v["pil"]["sha256"])
manifest["backend_pairs"] = len(by)

# --------------------------------------------------------------------------------------
# preprocessor_config.json parsing: what Siglip2ImageProcessor resolves for a given JSON
# --------------------------------------------------------------------------------------
HALF = [0.5, 0.5, 0.5]
HUB_NAFLEX = {"do_convert_rgb": None, "do_normalize": True, "do_rescale": True, "do_resize": True,
              "image_mean": HALF, "image_processor_type": "Siglip2ImageProcessor", "image_std": HALF,
              "max_num_patches": 256, "patch_size": 16, "processor_class": "Siglip2Processor", "resample": 2,
              "rescale_factor": 0.00392156862745098}
CONFIGS = {
    "hub-naflex": HUB_NAFLEX,
    "empty": {},
    "patch14-576": {"patch_size": 14, "max_num_patches": 576},
    "null-switches": {"do_resize": None, "do_rescale": None, "do_normalize": None, "rescale_factor": None},
    "null-resample": {"resample": None},
    "bicubic": {"resample": 3},
    "bicubic-no-resize": {"resample": 3, "do_resize": False},
    "null-patch-size": {"patch_size": None},
    "null-max-num-patches": {"max_num_patches": None},
    "null-mean": {"image_mean": None},
    "null-rescale-factor": {"rescale_factor": None},
    "scalar-mean": {"image_mean": 0.45, "image_std": 0.27},
    "ignored-size-crop-pad": {"size": {"height": 3, "width": 4}, "do_center_crop": True,
                              "crop_size": {"height": 8, "width": 8}, "do_pad": True},
    "center-crop-without-crop-size": {"do_center_crop": True},
}


def tolist(v):
    return list(v) if isinstance(v, (list, tuple)) else v


probe = IMAGES["exact_32x64"]
for cname, cfg in CONFIGS.items():
    kwargs = {k: v for k, v in cfg.items() if k not in ("image_processor_type", "processor_class")}
    proc = Siglip2ImageProcessor(**kwargs)
    entry = {"name": cname, "json": cfg, "resolved": {
        "patch_size": proc.patch_size, "max_num_patches": proc.max_num_patches, "do_resize": proc.do_resize,
        "resample": None if proc.resample is None else int(proc.resample), "do_rescale": proc.do_rescale,
        "rescale_factor": proc.rescale_factor, "do_normalize": proc.do_normalize,
        "image_mean": tolist(proc.image_mean), "image_std": tolist(proc.image_std)}}
    try:
        out = proc(images=Image.fromarray(probe), return_tensors="np")
        entry["hf_processes"] = True
        entry["spatial_shapes"] = [int(x) for x in np.asarray(out["spatial_shapes"])[0]]
    except Exception as e:  # noqa: BLE001  (record HF's failure)
        entry["hf_processes"] = False
        entry["hf_error"] = f"{type(e).__name__}: {e}"[:200]
    manifest["configs"].append(entry)


# --------------------------------------------------------------------------------------
# (3) position-embedding grid resize: HF's own resize_positional_embeddings
# --------------------------------------------------------------------------------------
def spec_weights(n_in: int, n_out: int) -> np.ndarray:
    """Independent float64 transcription of the spec §4.3 1-D formula (no torch)."""
    scale = n_in / n_out
    fs = max(scale, 1.0)
    inv = 1.0 / fs
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = (i + 0.5) * scale
        xmin = max(int(center - fs + 0.5), 0)
        xmax = min(int(center + fs + 0.5), n_in)
        ws = [max(0.0, 1.0 - abs((x - center + 0.5) * inv)) for x in range(xmin, xmax)]
        tot = sum(ws)
        for j, x in enumerate(range(xmin, xmax)):
            m[i, x] = ws[j] / tot if tot != 0 else ws[j]
    return m


def reference_f64(table: np.ndarray, g: int, h: int, w: int) -> np.ndarray:
    """Mathematically correct separable resize in float64: (h*w, D)."""
    grid = table.astype(np.float64).reshape(g, g, -1)
    if w != g:
        grid = np.einsum("ox,yxd->yod", spec_weights(g, w), grid)
    if h != g:
        grid = np.einsum("oy,yxd->oxd", spec_weights(g, h), grid)
    return grid.reshape(h * w, -1)


def hf_resize(table: np.ndarray, g: int, h: int, w: int, extra: int = 3) -> np.ndarray:
    pos = torch.from_numpy(table.copy()).reshape(g, g, -1)
    shapes = torch.tensor([[h, w]], dtype=torch.long)
    out = Siglip2VisionEmbeddings.resize_positional_embeddings(pos, shapes, max_length=h * w + extra)[0].numpy()
    assert (out[h * w:] == out[0]).all(), "rows h*w.. are copies of row 0"
    return out[: h * w]


def pos_table(g: int, d: int) -> np.ndarray:
    """A random table at the scale of trained position embeddings (|values| ~ 0.05): the float32
    weights' rounding then stays well inside 1e-6 of the float64 reference."""
    return (0.05 * rng.standard_normal((g * g, d))).astype(np.float32)


def quirk(g: int, h: int, w: int) -> bool:
    return w == 1 and g != 1 and h != g and h != 1


TARGETS_16 = [(20, 24), (32, 32), (40, 17), (7, 5), (3, 4), (9, 13), (5, 30), (30, 5), (12, 21), (14, 18),
              (1, 250), (250, 1), (7, 1), (2, 1), (1, 1), (16, 16), (16, 1), (1, 16), (3, 73), (73, 3), (8, 8),
              (256, 1), (1, 256), (11, 1)]
TARGETS_SMALL = [(7, 5), (3, 4), (5, 13), (13, 5), (11, 9), (2, 1), (7, 1), (40, 1), (1, 40), (1, 1), (3, 73)]
manifest["position"] = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "grids": [], "cases": [],
                        "sweep": []}
for (g, D, targets) in [(16, 8, TARGETS_16), (8, 4, TARGETS_SMALL + [(8, 8), (8, 1), (1, 8), (16, 16)]),
                        (6, 4, TARGETS_SMALL + [(6, 6), (6, 1), (1, 6), (16, 16)])]:
    table = pos_table(g, D)
    tkey = put(f"pos/table/g{g}_d{D}", table)
    manifest["position"]["grids"].append({"grid": g, "dim": D, "key": tkey})
    for (h, w) in targets:
        hf = hf_resize(table, g, h, w)
        ref = reference_f64(table, g, h, w)
        q = quirk(g, h, w)
        replicated = bool((hf == hf[:1]).all()) if w == 1 and h > 1 else False
        if q:
            assert replicated, (g, h, w)
            assert np.abs(hf - ref).max() > 1e-3, (g, h, w)
        else:
            assert np.abs(hf - ref).max() < 1e-6, (g, h, w, np.abs(hf - ref).max())
        case = {"grid": g, "dim": D, "h": h, "w": w, "table": tkey, "quirk": q, "replicated_row0": replicated,
                "max_abs_hf_vs_ref_f64": float(np.abs(hf - ref).max()), "hf_sha256": sha(hf.astype("<f4"))}
        if h * w <= 300:
            case["hf"] = put(f"pos/hf/g{g}_d{D}/{h}x{w}", hf)
        if w == 1:  # the float64 reference is stored where the quirk can matter
            case["ref_f64"] = put(f"pos/ref/g{g}_d{D}/{h}x{w}", ref)
        manifest["position"]["cases"].append(case)

# A realistic width (hashes only): D = 64 on the 16x16 grid.
g, D = 16, 64
ii, dd = np.meshgrid(np.arange(g * g), np.arange(D), indexing="ij")
table = ((((ii * 7919 + dd * 104729) % 2001) - 1000) / 20000.0).astype(np.float32)  # float64 division, then float32
FORMULA = "float32((((i*7919 + d*104729) % 2001) - 1000) / 20000) for row i, column d (float64 division)"
tkey = "formula"
manifest["position"]["grids"].append({"grid": g, "dim": D, "formula": FORMULA})
for (h, w) in [(12, 21), (27, 36), (24, 42), (3, 73), (250, 1), (1, 250), (32, 32), (16, 16), (7, 1), (9, 13)]:
    hf = hf_resize(table, g, h, w)
    manifest["position"]["cases"].append({"grid": g, "dim": D, "h": h, "w": w, "table": tkey, "quirk": quirk(g, h, w),
                                          "hf_sha256": sha(hf.astype("<f4"))})

# Sweep (hashes only): every (h, w) in 1..24 x 1..24 on the 16x16 grid, D = 3.
g, D = 16, 3
table = pos_table(g, D)
tkey = put(f"pos/table/g{g}_d{D}", table)
manifest["position"]["grids"].append({"grid": g, "dim": D, "key": tkey})
for h in range(1, 25):
    for w in range(1, 25):
        hf = hf_resize(table, g, h, w, extra=0)
        manifest["position"]["sweep"].append([h, w, sha(hf.astype("<f4"))[:16], quirk(g, h, w)])
manifest["position"]["sweep_grid"] = {"grid": g, "dim": D, "table": tkey,
                                      "row": "[h, w, first 16 hex digits of the sha256 of the (h*w, D) float32 output, quirk]"}

# --------------------------------------------------------------------------------------
manifest["versions"] = {"transformers": transformers.__version__, "torch": torch.__version__,
                        "torchvision": __import__("torchvision").__version__, "pillow": Image.__version__,
                        "numpy": np.__version__}
manifest["storage"] = {"stored_pixel_values": sorted(list(x) for x in STORED_PV),
                       "sha256": "of the raw little-endian float32 bytes of the valid pixel_values rows "
                                 "((n, 3*P*P) row-major) / of the (h*w, D) resized position grid"}

st_path = os.path.join(common.GOLDENS, "naflex-preprocess.safetensors")
save_file(tensors, st_path)
os.chmod(st_path, 0o644)
js_path = os.path.join(common.GOLDENS, "naflex-preprocess.json")
with open(js_path, "w") as f:
    json.dump(manifest, f, indent=1, sort_keys=False)
    f.write("\n")
print(f"naflex goldens: {len(tensors)} tensors, {os.path.getsize(st_path)} + {os.path.getsize(js_path)} bytes; "
      f"{manifest['backends_identical']}/{manifest['backend_pairs']} processor cases identical across backends; "
      f"cpu capability {manifest['position']['cpu_capability']}")
