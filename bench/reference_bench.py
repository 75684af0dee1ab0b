"""The reference side of the benchmark: transformers + PyTorch fp32 on CPU.

Called by bench/run.ts (one process per measurement, so that peak RSS is per job);
prints one JSON object on stdout. Modes:

  throughput --model DIR --tower vision|text --batches 1,8,32 --threads N --min-seconds S
  folder     --model DIR --folder DIR --threads N     # load + preprocess + embed every image in a folder
  gemm       --threads N                              # fp32 GEMM rate (torch.matmul)
"""
import argparse
import glob
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "reference"))
import common  # noqa: E402,F401  (torchvision import patch)
import torch  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(model_dir: str, tower: str):
    from transformers import AutoConfig, AutoModel
    cfg = AutoConfig.from_pretrained(model_dir)
    t0 = time.perf_counter()
    # What a transformers user does: the full model (both towers), fp32, eval mode.
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    return cfg, model, time.perf_counter() - t0


def timed(fn, min_seconds: float, min_reps: int = 2):
    fn()  # warm-up
    reps, t0 = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - t0 < min_seconds:
        fn()
        reps += 1
    return reps, time.perf_counter() - t0


def throughput(a):
    cfg, model, load_s = load(a.model, a.tower)
    out = {"load_s": load_s, "batches": {}}
    naflex = cfg.model_type == "siglip2"
    torch.manual_seed(0)
    with torch.inference_mode():
        for b in [int(x) for x in a.batches.split(",")]:
            if a.tower == "text":
                ids = torch.randint(0, 256000, (b, 64))
                fn = lambda: model.get_text_features(input_ids=ids)  # noqa: E731
            elif naflex:
                p = cfg.vision_config.patch_size
                n = a.patches
                px = torch.randn(b, n, 3 * p * p)
                mask = torch.ones(b, n, dtype=torch.int32)
                side = int(n ** 0.5)
                shapes = torch.tensor([[side, n // side]] * b)
                fn = lambda: model.get_image_features(pixel_values=px, pixel_attention_mask=mask, spatial_shapes=shapes)  # noqa: E731
            else:
                r = cfg.vision_config.image_size
                px = torch.randn(b, 3, r, r)
                fn = lambda: model.get_image_features(pixel_values=px)  # noqa: E731
            reps, secs = timed(fn, a.min_seconds)
            out["batches"][str(b)] = {"items_per_s": reps * b / secs}
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def folder(a):
    t0 = time.perf_counter()
    from PIL import Image
    from transformers import AutoModel, AutoProcessor
    model = AutoModel.from_pretrained(a.model, dtype=torch.float32).eval()
    proc = AutoProcessor.from_pretrained(a.model)
    paths = sorted(glob.glob(os.path.join(a.folder, "*.jpg")))[: a.limit or None]
    embeds = []
    with torch.inference_mode():
        for i in range(0, len(paths), a.batch):
            images = [Image.open(p).convert("RGB") for p in paths[i:i + a.batch]]
            inputs = proc(images=images, return_tensors="pt")
            e = model.get_image_features(**inputs).pooler_output
            embeds.append(e / e.norm(dim=-1, keepdim=True))
    n = sum(e.shape[0] for e in embeds)
    return {"seconds": time.perf_counter() - t0, "images": n, "peak_rss_mb": peak_rss_mb()}


def gemm(a):
    m, k, n = 1568, 768, 3072
    x, w = torch.randn(m, k), torch.randn(k, n)
    reps, secs = timed(lambda: torch.matmul(x, w), 2.0, 5)
    return {"gflops": 2 * m * k * n * reps / secs / 1e9}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["throughput", "folder", "gemm"])
    ap.add_argument("--model")
    ap.add_argument("--tower", default="vision")
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--patches", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--folder")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    r = {"throughput": throughput, "folder": folder, "gemm": gemm}[a.mode](a)
    r["torch"] = torch.__version__
    print(json.dumps(r))


if __name__ == "__main__":
    main()
