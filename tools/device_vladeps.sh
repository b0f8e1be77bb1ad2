#!/bin/bash
# transformers, peft and their pure-Python / cp312 dependencies for the GPU machine's Python 3.12
# (no registry there), unpacked into DIR (default .device/vla) to carry with `run` and put on
# PYTHONPATH next to .device/py. Not pruned (peft imports model classes from all over transformers);
# carried xz-compressed (tools/bench_vla_gpu.sh). Same versions as the CPU machine.
set -euo pipefail
DIR=${1:-.device/vla}
rm -rf "$DIR" && mkdir -p "$DIR"
TMP=$(mktemp -d)
pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 -d "$TMP" \
    transformers==5.24.0 peft==0.21.2 accelerate==1.15.0 huggingface_hub==2.4.0 tokenizers==0.23.3 \
    regex==2026.5.9 typer==0.29.2 pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 \
    typing-inspection==0.4.2 annotated-doc==0.0.7 shellingham==1.5.4 fsspec==2026.9.0 httpx2==2.16.2 \
    httpcore2==2.16.2 anyio==4.16.0 idna==3.20 truststore==0.10.5 h11==0.16.0 sniffio==1.3.1 \
    typing-extensions==4.16.0 psutil==7.2.2 hf-xet==1.8.0 tqdm==4.70.1 packaging==26.2
for w in "$TMP"/*.whl; do python -m zipfile -e "$w" "$DIR"; done
rm -rf "$TMP" "$DIR"/bin "$DIR"/*.dist-info/RECORD
find "$DIR" -name __pycache__ -type d -exec rm -rf {} +
du -sh "$DIR"
