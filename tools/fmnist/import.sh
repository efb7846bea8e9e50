#!/usr/bin/env bash
# Imports every models/fmnist/<net>.onnx into the committed ptq4 model file
# models/fmnist/<net>.safetensors, with the preprocessing recorded in zoo.json.
# Usage: tools/fmnist/import.sh [PTQ4_BINARY]   (default: target/release/ptq4, built here)
# The import is deterministic: tests/fmnist_zoo.rs re-imports each ONNX file and compares bytes.
set -euo pipefail
cd "$(dirname "$0")/../.."
ptq4=${1:-target/release/ptq4}
[ -n "${1:-}" ] || cargo build --release --locked -q
read -r mean std size < <(python3 -c 'import json; p = json.load(open("models/fmnist/zoo.json"))["preprocess"]; print(p["mean_255"], p["std_255"], p["size"])')
for onnx in models/fmnist/*.onnx; do
    "$ptq4" import "$onnx" --preprocess none --mean "$mean" --std "$std" --size "$size" \
        --resize "$size" -o "${onnx%.onnx}.safetensors"
done
