#!/bin/bash
# Pure-Python (and abi3) packages rlvla3 needs that the GPU machine's Python 3.12 image lacks,
# unpacked into DIR (default .device/py) to carry there with `run` and put on PYTHONPATH.
# Ray and gymnasium come from ../shared/device (build_bundle.sh); torch is on the machine.
set -euo pipefail
DIR=${1:-.device/py}
rm -rf "$DIR" && mkdir -p "$DIR"
# Same versions as the CPU machine (all pure Python).
pip install --quiet --no-deps --target "$DIR" omegaconf==2.4.0 antlr4-python3-runtime==4.13.2 rich markdown-it-py \
    mdurl pygments cloudpickle farama-notifications gymnasium==1.4.0
TMP=$(mktemp -d)
pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
    -d "$TMP" safetensors
python -m zipfile -e "$TMP"/safetensors-*.whl "$DIR"
rm -rf "$TMP" "$DIR"/bin
find "$DIR" -name __pycache__ -type d -exec rm -rf {} +  # compiled for this Python, not 3.12
du -sh "$DIR"
