"""Goldens for src/train/posemb-init.ts: big_vision's 2-D sine-cosine position table
(big_vision/models/vit.py `posemb_sincos_2d`, written here with numpy as big_vision writes it with jnp),
for a few grids and widths. tests/posemb-init.test.ts compares our table with these.

    /path/to/python tools/reference/posemb_goldens.py   # writes tests/fixtures/goldens/posemb-sincos.json
"""
import json
import os

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(REPO, "tests", "fixtures", "goldens", "posemb-sincos.json")


def posemb_sincos_2d(h, w, width, temperature=10_000.0, dtype=np.float32):
    """big_vision: Follows the MoCo v3 logic."""
    y, x = np.mgrid[:h, :w]
    assert width % 4 == 0, "Width must be mult of 4 for sincos posemb"
    omega = np.arange(width // 4) / (width // 4 - 1)
    omega = 1.0 / (temperature**omega)
    y = np.einsum("m,d->md", y.flatten(), omega)
    x = np.einsum("m,d->md", x.flatten(), omega)
    pe = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
    return np.asarray(pe, dtype)[None, :, :]


def main():
    cases = []
    for h, w, width in [(2, 3, 8), (4, 4, 16), (8, 5, 64)]:
        pe = posemb_sincos_2d(h, w, width)[0]
        cases.append({"h": h, "w": w, "width": width, "table": [float(v) for v in pe.reshape(-1)]})
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"source": "big_vision models/vit.py posemb_sincos_2d (numpy)", "numpy": np.__version__, "cases": cases}, f)
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
