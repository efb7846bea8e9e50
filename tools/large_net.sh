#!/usr/bin/env bash
# Peak RSS and speed of a large network on every path, for the README's table:
#   tools/large_net.sh MODEL.onnx [N_IMAGES] [BACKENDS]
# On each backend (default "cpu gpu"; the GPU one is the adapter wgpu finds: lavapipe on a
# machine without a GPU): quantizes MODEL (deploy and paper W4A4, 8 calibration images of
# imagenet-samples), then evaluates FP32, paper (simulated), deploy --exec int and --exec sim
# on N_IMAGES (default 8, one batch). One Markdown row per run; peak RSS from /usr/bin/time -v.
set -euo pipefail
model=$1 n=${2:-8} backends=${3:-cpu gpu}
bin=${PTQ4:-target/release/ptq4}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
timed() { /usr/bin/time -v -o "$tmp/time" "$bin" "$@" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err" >&2; exit 1; }; }
rss() { awk '/Maximum resident/ {printf "%.0f", $6 / 1024}' "$tmp/time"; }
echo "| backend | run | images/s (or s) | peak RSS (MiB) | logits_sha256 |"
echo "|---|---|---|---|---|"
for b in $backends; do
  for p in deploy paper; do
    t0=$(date +%s.%N)
    timed quantize --model "$model" --protocol "$p" --calib imagenet-samples --calib-n 8 \
      --backend "$b" -o "$tmp/$p.safetensors"
    echo "| $b | quantize $p | $(python3 -c "print(f'{$(date +%s.%N) - $t0:.1f}')") s | $(rss) | |"
  done
  for run in "fp32:$model:" "paper:$tmp/paper.safetensors:" \
    "deploy int:$tmp/deploy.safetensors:int" "deploy sim:$tmp/deploy.safetensors:sim"; do
    IFS=: read -r what m exec <<<"$run"
    args=(eval --model "$m" --data imagenet-samples --limit "$n" --batch "$n" --backend "$b" --json)
    [ -n "$exec" ] && args+=(--exec "$exec")
    timed "${args[@]}"
    python3 - "$tmp/out" "$what" "$(rss)" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"| {r['backend']} | {sys.argv[2]} | {r['images_per_s']:.2f} | {sys.argv[3]} | {r['logits_sha256'][:12]}… |")
PY
  done
done
