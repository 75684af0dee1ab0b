"""Generate the image fixtures and preprocessing goldens (spec §4) for tests/preprocess.test.ts.

Python is the oracle only. Everything stored here comes from the reference libraries
(transformers 5.x SiglipImageProcessor / SiglipImageProcessorPil, torchvision resize,
Pillow resize / convert("RGB"), torch interpolate), never from the TypeScript code.

Writes:
  tests/fixtures/images/*                 small deterministic test images (+ bad files)
  tests/fixtures/goldens/preprocess.safetensors
  tests/fixtures/goldens/preprocess.json  manifest of all cases

Large arrays are not stored: for those the manifest holds the SHA-256 of the raw
little-endian bytes (float32 for pixel values, uint8 for resized images, HWC layout for
resized images, CHW for pixel values), which the tests compare bit-exactly.
"""
import common  # noqa: F401  (must be first: patches torchvision for CPU torch)

import transformers

import hashlib
import io
import json
import os
import struct
import zlib

import numpy as np
import torch
import torchvision.transforms.v2.functional as tvF
from PIL import Image
from safetensors.numpy import save_file
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil
from transformers.models.siglip.image_processing_siglip import SiglipImageProcessor

transformers.logging.set_verbosity_error()  # silence "channel dimension is ambiguous" for 1x1 images

IMAGES = os.path.join(common.FIXTURES, "images")
os.makedirs(IMAGES, exist_ok=True)
os.makedirs(common.GOLDENS, exist_ok=True)

rng = np.random.default_rng(20240601)

tensors: dict[str, np.ndarray] = {}
manifest: dict = {"images": {}, "decode": [], "bad": [], "resize": [], "pixel_values": [], "configs": [],
                  "weights": []}

# Storage policy (keeps the goldens small): arrays with at most these many pixels are stored.
MAX_STORED_PV_PIXELS = 400
MAX_STORED_DECODE_PIXELS = 2500
MAX_STORED_U8_PIXELS = 2500


def sha(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def put(name: str, a: np.ndarray) -> str:
    assert name not in tensors, name
    tensors[name] = np.ascontiguousarray(a)
    return name


# --------------------------------------------------------------------------------------
# Test images
# --------------------------------------------------------------------------------------

def photo_like(h: int, w: int, noise: int = 6) -> np.ndarray:
    """Smooth structures (gradients, discs, stripes) plus mild noise: compresses well, resizes like a photo."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / w * 3.1 + y / h * 1.3)
    g = 128 + 90 * np.cos(y / h * 4.2) * np.sin(x / w * 2.0 + 0.5)
    b = 60 + 150 * ((x - w * 0.6) ** 2 + (y - h * 0.4) ** 2 < (min(h, w) * 0.3) ** 2)
    b = b + 30 * (np.floor(x / 7) % 2)
    img = np.stack([r, g, b], axis=-1) + rng.integers(-noise, noise + 1, size=(h, w, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def noise(h: int, w: int, c: int = 3) -> np.ndarray:
    shape = (h, w, c) if c > 1 else (h, w)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def gradient(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = x / (w - 1) * 255
    g = y / (h - 1) * 255
    b = (x + y) / (w + h - 2) * 255
    return np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_raw(path: str, width: int, height: int, bit_depth: int, colour_type: int, rows: list[bytes]) -> None:
    """Minimal PNG writer (filter 0 on every row) for 16-bit images and hand-made headers."""
    raw = b"".join(b"\x00" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw, 9))
                + png_chunk(b"IEND", b""))


def save_png(name: str, im: Image.Image, kind: str, **kw) -> str:
    path = os.path.join(IMAGES, name)
    im.save(path, "PNG", optimize=True, **kw)
    manifest["images"][name] = {"kind": kind, "mode": im.mode, "height": im.height, "width": im.width}
    return name


png_rgb = []  # PNGs used for the resize / pixel_values cases
png_rgb.append(save_png("rgb_37x23.png", Image.fromarray(noise(37, 23)), "noise"))
png_rgb.append(save_png("rgb_23x37.png", Image.fromarray(noise(23, 37)), "noise"))
png_rgb.append(save_png("rgb_64x64.png", Image.fromarray(noise(64, 64)), "noise"))
png_rgb.append(save_png("grad_224x224.png", Image.fromarray(gradient(224, 224)), "gradient"))
png_rgb.append(save_png("photo_200x300.png", Image.fromarray(photo_like(200, 300)), "photo-like"))
png_rgb.append(save_png("strip_5x400.png", Image.fromarray(noise(5, 400)), "noise"))
png_rgb.append(save_png("px_1x1.png", Image.fromarray(np.array([[[200, 17, 99]]], dtype=np.uint8)), "single pixel"))

# Non-RGB modes (PIL convert("RGB") semantics are the decode target).
png_modes = []
png_modes.append(save_png("grey_31x17.png", Image.fromarray(noise(31, 17, 1), mode="L"), "grey L"))
rgba = noise(19, 29, 4)
rgba[0, :, 3] = 0
rgba[1, :, 3] = 255
png_modes.append(save_png("rgba_19x29.png", Image.fromarray(rgba, mode="RGBA"), "RGBA varied alpha"))
la = noise(13, 27, 2)
la[0, :, 1] = 0
png_modes.append(save_png("la_13x27.png", Image.fromarray(la, mode="LA"), "grey+alpha LA"))
pal = Image.fromarray(rng.integers(0, 16, size=(21, 33), dtype=np.uint8), mode="P")
pal.putpalette(list(rng.integers(0, 256, size=16 * 3, dtype=np.uint8).tolist()))
png_modes.append(save_png("pal_21x33.png", pal, "palette P (16 colours)"))
palt = pal.copy()
png_modes.append(save_png("palt_21x33.png", palt, "palette P with tRNS transparency", transparency=3))
# 1-bit image.
bw = Image.fromarray(noise(9, 14, 1) > 127).convert("1")
png_modes.append(save_png("bw_9x14.png", bw, "1-bit"))

# 16-bit PNGs (hand-written: PIL cannot write 16-bit RGB).
rgb16 = rng.integers(0, 65536, size=(12, 10, 3), dtype=np.uint16)
write_png_raw(os.path.join(IMAGES, "rgb16_12x10.png"), 10, 12, 16, 2, [r.astype(">u2").tobytes() for r in rgb16])
manifest["images"]["rgb16_12x10.png"] = {"kind": "16-bit RGB", "mode": "RGB;16", "height": 12, "width": 10}
grey16 = rng.integers(0, 65536, size=(12, 10), dtype=np.uint16)
write_png_raw(os.path.join(IMAGES, "grey16_12x10.png"), 10, 12, 16, 0, [r.astype(">u2").tobytes() for r in grey16])
manifest["images"]["grey16_12x10.png"] = {"kind": "16-bit grey", "mode": "I;16", "height": 12, "width": 10}

# Other containers, from one photo-like image.
photo = photo_like(48, 64, noise=3)
photo_im = Image.fromarray(photo)


def save_other(name: str, fmt: str, im: Image.Image, kind: str, **kw) -> str:
    path = os.path.join(IMAGES, name)
    im.save(path, fmt, **kw)
    manifest["images"][name] = {"kind": kind, "mode": im.mode, "height": im.height, "width": im.width}
    return name


save_other("photo_48x64.jpg", "JPEG", photo_im, "JPEG q90", quality=90)
save_other("photo_48x64.webp", "WEBP", photo_im, "WebP lossless", lossless=True)
save_other("photo_48x64_lossy.webp", "WEBP", photo_im, "WebP lossy", quality=80)
save_other("photo_48x64.tiff", "TIFF", photo_im, "TIFF LZW", compression="tiff_lzw")
save_other("photo_48x64.avif", "AVIF", photo_im, "AVIF lossy", quality=90)
# Animated GIF: the first frame must be returned. Palette images without transparency.
gif0 = photo_im.quantize(colors=64, dither=Image.Dither.NONE)
gif1 = Image.fromarray(255 - photo).quantize(colors=64, dither=Image.Dither.NONE)
gif0.save(os.path.join(IMAGES, "anim_48x64.gif"), "GIF", save_all=True, append_images=[gif1], duration=100, loop=0)
manifest["images"]["anim_48x64.gif"] = {"kind": "animated GIF (2 frames)", "mode": "P", "height": 48, "width": 64}
# JPEG with EXIF orientation 6 (stored 48x64, displayed rotated 90 degrees clockwise: 64x48).
exif = Image.Exif()
exif[0x0112] = 6
save_other("exif6_48x64.jpg", "JPEG", photo_im, "JPEG with EXIF orientation 6", quality=90, exif=exif.tobytes())
# PNG with EXIF orientation 3 (180 degrees) in an eXIf chunk: lossless check of orientation.
exif3 = Image.Exif()
exif3[0x0112] = 3
save_other("exif3_23x37.png", "PNG", Image.open(os.path.join(IMAGES, "rgb_23x37.png")).convert("RGB"),
           "PNG with EXIF orientation 3", exif=exif3.tobytes())
# CMYK JPEG (PIL's naive CMYK->RGB vs a colour-managed conversion).
save_other("cmyk_48x64.jpg", "JPEG", photo_im.convert("CMYK"), "CMYK JPEG", quality=95)

# Bad files.
good_png = open(os.path.join(IMAGES, "rgb_64x64.png"), "rb").read()
with open(os.path.join(IMAGES, "bad_truncated.png"), "wb") as f:
    f.write(good_png[: len(good_png) // 2])
good_jpg = open(os.path.join(IMAGES, "photo_48x64.jpg"), "rb").read()
with open(os.path.join(IMAGES, "bad_truncated.jpg"), "wb") as f:
    f.write(good_jpg[: len(good_jpg) // 2])
with open(os.path.join(IMAGES, "bad_random.png"), "wb") as f:
    f.write(rng.integers(0, 256, size=700, dtype=np.uint8).tobytes())
with open(os.path.join(IMAGES, "bad_empty.png"), "wb") as f:
    pass
with open(os.path.join(IMAGES, "bad_text.txt"), "w") as f:
    f.write("this is not an image\n")
# Header claims 100000 x 100000 pixels (a decompression bomb); the data is tiny.
write_png_raw(os.path.join(IMAGES, "bad_huge.png"), 100000, 100000, 1, 0, [b"\x00" * 12500] * 2)
# Zero width in the header.
write_png_raw(os.path.join(IMAGES, "bad_zero.png"), 0, 4, 8, 2, [b""] * 4)
manifest["bad"] = [
    {"file": "bad_truncated.png", "problem": "truncated PNG"},
    {"file": "bad_truncated.jpg", "problem": "truncated JPEG"},
    {"file": "bad_random.png", "problem": "random bytes named .png"},
    {"file": "bad_empty.png", "problem": "empty file"},
    {"file": "bad_text.txt", "problem": "text file"},
    {"file": "bad_huge.png", "problem": "100000x100000 header (too many pixels)"},
    {"file": "bad_zero.png", "problem": "zero width"},
    {"file": "does_not_exist.png", "problem": "missing file"},
]
for b in manifest["bad"]:
    try:
        Image.open(os.path.join(IMAGES, b["file"])).convert("RGB")
        b["pil"] = "ok"
    except Exception as e:  # noqa: BLE001  (record what PIL says, for information)
        b["pil"] = f"{type(e).__name__}: {e}"[:200]

# --------------------------------------------------------------------------------------
# Decode goldens: PIL Image.open(p).convert("RGB") (after exif_transpose where noted)
# --------------------------------------------------------------------------------------
from PIL import ImageOps  # noqa: E402


def decode_case(name: str, exact: bool, transpose: bool = False, note: str = "") -> None:
    im = Image.open(os.path.join(IMAGES, name))
    mode = im.mode
    if transpose:
        im = ImageOps.exif_transpose(im)
    rgb = np.asarray(im.convert("RGB"))
    case = {"file": name, "pil_mode": mode, "height": rgb.shape[0], "width": rgb.shape[1], "sha256": sha(rgb),
            "exact": exact, "exif_transpose": transpose, "note": note}
    if rgb.shape[0] * rgb.shape[1] <= MAX_STORED_DECODE_PIXELS or not exact:
        case["key"] = put(f"decode/{name}", rgb)
    manifest["decode"].append(case)


for n in png_rgb + png_modes:
    decode_case(n, exact=True)
decode_case("rgb16_12x10.png", exact=True, note="PIL reads 16-bit RGB PNG as 8-bit (high byte)")
decode_case("grey16_12x10.png", exact=False,
            note="PIL opens as I;16 and convert('RGB') CLIPS values > 255 to 255; the port scales to 8 bits (high byte)")
put("grey16_12x10.png/high_byte", (grey16 >> 8).astype(np.uint8))
decode_case("photo_48x64.webp", exact=True)
decode_case("photo_48x64.tiff", exact=True)
decode_case("anim_48x64.gif", exact=True, note="first frame")
decode_case("exif3_23x37.png", exact=True, transpose=True, note="EXIF orientation 3 in a PNG eXIf chunk")
decode_case("photo_48x64.jpg", exact=False, note="JPEG: decoders may differ slightly")
decode_case("exif6_48x64.jpg", exact=False, transpose=True, note="EXIF orientation 6")
decode_case("photo_48x64_lossy.webp", exact=False)
decode_case("photo_48x64.avif", exact=False)
decode_case("cmyk_48x64.jpg", exact=False, note="PIL's naive CMYK->RGB")
put("photo_48x64/source", photo)

# --------------------------------------------------------------------------------------
# Resize + pixel_values goldens
# --------------------------------------------------------------------------------------

def torch_resize(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    t = torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous().unsqueeze(0)
    out = tvF.resize(t, [h, w], interpolation=tvF.InterpolationMode.BILINEAR, antialias=True)
    return out[0].permute(1, 2, 0).contiguous().numpy()


def pil_resize(rgb: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))


PROCESSORS = {"torch": SiglipImageProcessor, "pil": SiglipImageProcessorPil}
HALF = [0.5, 0.5, 0.5]


def hf_pixel_values(backend: str, im: Image.Image, **kw) -> np.ndarray:
    proc = PROCESSORS[backend](**kw)
    assert proc.backend == ("torchvision" if backend == "torch" else "pil")
    pv = proc(images=im, return_tensors="np")["pixel_values"]
    assert pv.shape[0] == 1 and pv.shape[1] == 3, pv.shape
    return np.asarray(pv[0])


def record_pv(case: dict, pv: np.ndarray, prefix: str) -> None:
    assert pv.dtype == np.float32, pv.dtype
    case["height"], case["width"] = int(pv.shape[1]), int(pv.shape[2])
    case["sha256"] = sha(pv.astype("<f4"))
    if pv.shape[1] * pv.shape[2] <= MAX_STORED_PV_PIXELS:
        case["key"] = put(prefix, pv)


def targets_for(h: int, w: int) -> list[tuple[int, int]]:
    t = [(16, 16), (30, 30), (24, 40), (32, 32), (h, w)]
    up = (min(2 * h + 1, 480), min(2 * w + 3, 480))
    t.append(up)
    if max(h, w) >= 64:
        t.append((224, 224))
    out = []
    for x in t:
        if x not in out:
            out.append(x)
    return out


backend_diff = []
for name in png_rgb + png_modes + ["rgb16_12x10.png"]:
    im = Image.open(os.path.join(IMAGES, name)).convert("RGB")
    rgb = np.asarray(im)
    for (h, w) in targets_for(im.height, im.width):
        res = {}
        for backend in ("torch", "pil"):
            r = torch_resize(rgb, h, w) if backend == "torch" else pil_resize(rgb, h, w)
            res[backend] = r
            case = {"image": name, "height": h, "width": w, "backend": backend, "sha256": sha(r)}
            if h * w <= MAX_STORED_U8_PIXELS:
                case["key"] = put(f"{name}/{h}x{w}/{backend}/resized", r)
            manifest["resize"].append(case)
            pv = hf_pixel_values(backend, im, size={"height": h, "width": w}, resample=2, image_mean=HALF,
                                 image_std=HALF)
            pcase = {"image": name, "target": [h, w], "backend": backend,
                     "config": {"size": {"height": h, "width": w}, "resample": 2, "image_mean": HALF,
                                "image_std": HALF}}
            record_pv(pcase, pv, f"{name}/{h}x{w}/{backend}/pixel_values")
            manifest["pixel_values"].append(pcase)
            # Oracle self-consistency (informational): HF's resize is the reference resize.
            ref = torch.from_numpy(r.astype(np.float32)).permute(2, 0, 1).numpy()
            assert np.abs(pv - (ref - 127.5) / 127.5).max() < 1e-6, (name, h, w, backend)
        d = np.abs(res["torch"].astype(int) - res["pil"].astype(int))
        backend_diff.append((name, h, w, int(d.max()), float((d > 0).mean())))

# Large synthetic images (a formula both sides can compute; only hashes are stored):
# strong downscales (640->224 uses torch precision 16) and a strong upscale.
def synthetic(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    r = (x * 7 + y * 13) % 256
    g = (x * x + 3 * y) % 256
    b = (x ^ (y * 5)) & 255
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


manifest["synthetic"] = {"formula": "R=(7x+13y)%256, G=(x*x+3y)%256, B=(x^(5y))&255", "cases": []}
for (h, w, th, tw) in [(480, 640, 224, 224), (333, 1000, 384, 384), (41, 37, 512, 512), (3, 1000, 16, 4080),
                       (1080, 1920, 192, 336)]:
    rgb = synthetic(h, w)
    im = Image.fromarray(rgb)
    for backend in ("torch", "pil"):
        r = torch_resize(rgb, th, tw) if backend == "torch" else pil_resize(rgb, th, tw)
        pv = hf_pixel_values(backend, im, size={"height": th, "width": tw}, resample=2, image_mean=HALF,
                             image_std=HALF)
        manifest["synthetic"]["cases"].append({"height": h, "width": w, "target": [th, tw], "backend": backend,
                                               "resized_sha256": sha(r), "pixel_values_sha256": sha(pv)})

# General normalisation (non-0.5 mean/std, scalar mean/std, rescale/normalise switched off).
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
NORM_CONFIGS = {
    "clip": {"image_mean": CLIP_MEAN, "image_std": CLIP_STD},
    "scalar": {"image_mean": 0.45, "image_std": 0.27},
    "imagenet_odd_rescale": {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
                             "rescale_factor": 0.00392},
    "no_normalize": {"do_normalize": False},
    "no_rescale": {"do_rescale": False, "image_mean": [127.0, 120.5, 3.25], "image_std": [60.0, 0.3, 77.7]},
    "no_rescale_no_normalize": {"do_rescale": False, "do_normalize": False},
}
for cname, extra in NORM_CONFIGS.items():
    for name in ["rgb_37x23.png", "photo_200x300.png", "px_1x1.png"]:
        im = Image.open(os.path.join(IMAGES, name)).convert("RGB")
        for (h, w) in [(16, 16), (im.height, im.width)]:
            for backend in ("torch", "pil"):
                cfg = {"size": {"height": h, "width": w}, "resample": 2, **extra}
                cfg.setdefault("image_mean", HALF)
                cfg.setdefault("image_std", HALF)
                pv = hf_pixel_values(backend, im, **cfg)
                pv = pv.astype(np.float32)  # no_rescale_no_normalize returns the uint8 image
                pcase = {"image": name, "target": [h, w], "backend": backend, "config": cfg, "norm": cname}
                record_pv(pcase, pv, f"{name}/{h}x{w}/{backend}/{cname}/pixel_values")
                manifest["pixel_values"].append(pcase)

# Aspect-preserving size variants that HF handles ({shortest_edge}, {shortest_edge, longest_edge}, int).
for size in [{"shortest_edge": 20}, {"shortest_edge": 16, "longest_edge": 20}, 18]:
    for name in ["rgb_37x23.png", "rgb_23x37.png", "strip_5x400.png"]:
        im = Image.open(os.path.join(IMAGES, name)).convert("RGB")
        if name == "strip_5x400.png" and "longest_edge" in str(size):
            continue  # HF itself fails here (target height rounds to 0)
        for backend in ("torch", "pil"):
            cfg = {"size": size, "resample": 2, "image_mean": HALF, "image_std": HALF}
            pv = hf_pixel_values(backend, im, **cfg)
            pcase = {"image": name, "target": None, "backend": backend, "config": cfg, "norm": "size-variant"}
            record_pv(pcase, pv, f"{name}/{json.dumps(size)}/{backend}/pixel_values")
            manifest["pixel_values"].append(pcase)

# --------------------------------------------------------------------------------------
# preprocessor_config.json parsing: what the HF class resolves for a given JSON
# --------------------------------------------------------------------------------------
HUB_224 = {"do_convert_rgb": None, "do_normalize": True, "do_rescale": True, "do_resize": True,
           "image_mean": HALF, "image_processor_type": "SiglipImageProcessor", "image_std": HALF,
           "processor_class": "SiglipProcessor", "resample": 2, "rescale_factor": 0.00392156862745098,
           "size": {"height": 224, "width": 224}}
CONFIGS = {
    "hub-224": HUB_224,
    "hub-384-nulls": {**HUB_224, "size": {"height": 384, "width": 384}, "do_rescale": None, "rescale_factor": None},
    "only-resample": {"resample": 2},
    "size-int": {"resample": 2, "size": 256},
    "size-list": {"resample": 2, "size": [200, 300]},
    "size-shortest": {"resample": 2, "size": {"shortest_edge": 224}},
    "size-shortest-longest": {"resample": 2, "size": {"shortest_edge": 224, "longest_edge": 300}},
    "mean-scalar": {"resample": 2, "image_mean": 0.45, "image_std": 0.27, "size": {"height": 64, "width": 48}},
    "no-resize-bicubic": {"do_resize": False, "resample": 3},
    "absent-resample": {"size": {"height": 64, "width": 64}},
    "null-switches": {"do_resize": None, "do_normalize": None, "resample": None},
    "null-resample": {"resample": None},
    "null-size": {"resample": 2, "size": None},
    "null-mean": {"resample": 2, "image_mean": None},
    "null-rescale-factor": {"resample": 2, "rescale_factor": None},
}
def tolist(v):
    return list(v) if isinstance(v, (list, tuple)) else v


for cname, cfg in CONFIGS.items():
    kwargs = {k: v for k, v in cfg.items() if k not in ("image_processor_type", "processor_class")}
    entry = {"name": cname, "json": cfg}
    proc = SiglipImageProcessor(**kwargs)
    size = None if proc.size is None else {k: v for k, v in dict(proc.size).items() if v is not None}
    entry["resolved"] = {"do_resize": proc.do_resize, "size": size,
                         "resample": None if proc.resample is None else int(proc.resample),
                         "do_rescale": proc.do_rescale, "rescale_factor": proc.rescale_factor,
                         "do_normalize": proc.do_normalize, "image_mean": tolist(proc.image_mean),
                         "image_std": tolist(proc.image_std)}
    # Does HF accept it when processing an image? (Errors for values a switched-on step needs.)
    try:
        proc(images=Image.new("RGB", (5, 4)), return_tensors="np")
        entry["hf_processes"] = True
    except ValueError as e:
        entry["hf_processes"] = False
        entry["hf_error"] = str(e)
    manifest["configs"].append(entry)

# End-to-end cases with null switches (null = None = off in transformers 5.x).
for cname in ["hub-384-nulls", "null-switches"]:
    cfg = {k: v for k, v in CONFIGS[cname].items() if k not in ("image_processor_type", "processor_class")}
    if cname == "hub-384-nulls":
        cfg["size"] = {"height": 16, "width": 16}
    for backend in ("torch", "pil"):
        im = Image.open(os.path.join(IMAGES, "rgb_37x23.png")).convert("RGB")
        pv = hf_pixel_values(backend, im, **cfg).astype(np.float32)
        pcase = {"image": "rgb_37x23.png", "target": None, "backend": backend, "config": cfg, "norm": cname}
        record_pv(pcase, pv, f"rgb_37x23.png/{cname}/{backend}/pixel_values")
        manifest["pixel_values"].append(pcase)

# --------------------------------------------------------------------------------------
# 1-D triangle weights: dense matrices from torch.interpolate on identity inputs
# --------------------------------------------------------------------------------------

def torch_weight_matrix(n_in: int, n_out: int, dtype) -> np.ndarray:
    eye = torch.eye(n_in, dtype=dtype).reshape(1, 1, n_in, n_in)  # rows = basis vectors, resize the width
    out = torch.nn.functional.interpolate(eye, size=(n_in, n_out), mode="bilinear", align_corners=False,
                                          antialias=True)
    return out[0, 0].T.contiguous().numpy()  # (n_out, n_in): M[i, x] = weight of input x for output i


def spec_weights(n_in: int, n_out: int) -> np.ndarray:
    """Independent float64 transcription of the spec §4.3 formula (cross-check of the torch matrices)."""
    scale = n_in / n_out
    fs = max(scale, 1.0)
    support = 1.0 * fs
    inv = 1.0 / fs
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = (i + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), n_in)
        ws = [max(0.0, 1.0 - abs((x - center + 0.5) * inv)) for x in range(xmin, xmax)]
        tot = sum(ws)
        for j, x in enumerate(range(xmin, xmax)):
            m[i, x] = ws[j] / tot if tot != 0 else ws[j]
    return m


PAIRS = [(23, 16), (37, 16), (16, 37), (5, 3), (7, 7), (1, 5), (5, 1), (400, 16), (64, 30), (30, 64), (3, 1000),
         (16, 24), (16, 7), (16, 27), (16, 14), (16, 1), (16, 64)]
for (n_in, n_out) in PAIRS:
    m64 = torch_weight_matrix(n_in, n_out, torch.float64)
    ref = spec_weights(n_in, n_out)
    assert np.abs(m64 - ref).max() < 1e-15, (n_in, n_out, np.abs(m64 - ref).max())
    m32 = torch_weight_matrix(n_in, n_out, torch.float32)
    entry = {"n_in": n_in, "n_out": n_out, "max_abs_torch64_vs_spec": float(np.abs(m64 - ref).max()),
             "exact_torch64_vs_spec": bool((m64 == ref).all())}
    if n_in * n_out <= 4000:
        entry["f64"] = put(f"weights/{n_in}->{n_out}/f64", m64)
        entry["f32"] = put(f"weights/{n_in}->{n_out}/f32", m32)
    else:
        entry["f64_sha256"] = sha(m64.astype("<f8"))
        entry["f32_sha256"] = sha(m32.astype("<f4"))
    manifest["weights"].append(entry)

# --------------------------------------------------------------------------------------
manifest["versions"] = {"transformers": __import__("transformers").__version__, "torch": torch.__version__,
                        "torchvision": __import__("torchvision").__version__,
                        "pillow": Image.__version__, "numpy": np.__version__}
manifest["storage"] = {"max_stored_pv_pixels": MAX_STORED_PV_PIXELS, "max_stored_u8_pixels": MAX_STORED_U8_PIXELS,
                       "sha256": "of the raw little-endian bytes; pixel values CHW float32, resized HWC uint8"}
manifest["backend_diff"] = [
    {"image": n, "height": h, "width": w, "max_abs": m, "fraction_differing": f} for (n, h, w, m, f) in backend_diff
]

save_file(tensors, os.path.join(common.GOLDENS, "preprocess.safetensors"))
os.chmod(os.path.join(common.GOLDENS, "preprocess.safetensors"), 0o644)
with open(os.path.join(common.GOLDENS, "preprocess.json"), "w") as f:
    json.dump(manifest, f, indent=1, sort_keys=False)
    f.write("\n")

img_total = sum(os.path.getsize(os.path.join(IMAGES, n)) for n in os.listdir(IMAGES))
print(f"images: {len(os.listdir(IMAGES))} files, {img_total} bytes")
print(f"goldens: {len(tensors)} tensors, {os.path.getsize(os.path.join(common.GOLDENS, 'preprocess.safetensors'))} bytes")
print("torch vs pil resized (max, fraction):", max(x[3] for x in backend_diff),
      max(x[4] for x in backend_diff))
