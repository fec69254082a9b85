#!/usr/bin/env bash
# PixelPost's training-step benchmark against its plain-PyTorch twin, side by side on this machine:
# the same weights and batch, the same OpenBLAS binary, alternating runs, the median of ROUNDS.
# usage: bench/compare.sh [ROUNDS] [ITERS]   (needs Debian's python3-torch; see bench/README.md)
set -euo pipefail
rounds=${1:-3}
iters=${2:-10}
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py=${PYTHON:-/usr/bin/python3}
"$py" -c "import torch" 2>/dev/null || { echo "compare.sh: $py has no torch (apt-get install python3-torch)" >&2; exit 2; }

# the OpenBLAS PixelPost loads (JavaCPP's cache), presented to PyTorch as its libblas.so.3
"$root/pixelpost" info >/dev/null
blasdir=$(ls -d "${JAVACPP_CACHE:-$HOME/.javacpp/cache}"/openblas-*/org/bytedeco/openblas/linux-x86_64 2>/dev/null | head -1)
[ -f "$blasdir/libopenblas.so.0" ] || { echo "compare.sh: no OpenBLAS in the JavaCPP cache ($blasdir)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ln -s "$blasdir/libopenblas.so.0" "$work/libblas.so.3"
ln -s "$blasdir/libopenblas.so.0" "$work/liblapack.so.3"

"$root/pixelpost" bench train --save-step "$work/step.safetensors" >/dev/null
run_py() { LD_LIBRARY_PATH="$work:$blasdir" OPENBLAS_NUM_THREADS=1 "$py" "$root/bench/pytorch_twin.py" "$work/step.safetensors" "$@"; }
run_py --check-only

for r in $(seq 1 "$rounds"); do
  "$root/pixelpost" bench train --no-options --concurrent-micro-batches 2 --iters "$iters" --json | sed -n '/^{/,$p' > "$work/pixelpost.$r.json"
  run_py --iters "$iters" --json > "$work/pytorch.$r.json"
  echo "round $r of $rounds done" >&2
done
"$py" - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
load = lambda who: [json.load(open(f"{work}/{who}.{r}.json")) for r in range(1, rounds + 1)]
pp, pt = load("pixelpost"), load("pytorch")
print("blas (pytorch):", pt[0]["blas"])
rows = [("latent_ms", "latent_ms"), ("pixel_ms", "pixel_ms"), ("decode_ms", "decode_ms"), ("decode_backward_ms", "decode_backward_ms"),
        # PixelPost's trainer with the batch as 2 micro-batches of 4 at once on their own threads (--concurrent-micro-batches 2)
        ("latent_ms_at_once", "latent_ms"), ("pixel_ms_at_once", "pixel_ms")]
mb = lambda x, k: x["micro_batches"][k] if k.endswith("_at_once") else x[k]
print(f"{'row':20s} {'PixelPost ms':>13s} {'PyTorch ms':>11s} {'ratio':>6s}")
for k, tk in rows:
    a, b = statistics.median(mb(x, k) for x in pp), statistics.median(x[tk] for x in pt)
    print(f"{k:20s} {a:13.1f} {b:11.1f} {a / b:6.2f}")
PY
