#!/bin/bash
# The metaworld package as a device-bundle part (.device/mw/rlvla3-mw.tar.xz), staged like the
# kit's parts (stage.sh / setup.sh unpack every .device/*/rlvla3-*.tar.xz into /tmp/site).
# The wheel is 36 MB, mostly textures and meshes; files that no MetaWorld XML names are left
# out (15 MB of assets stay), so the part can travel beside the working tree in one call.
set -euo pipefail
OUT=${1:-.device/mw}
TMP=$(mktemp -d)
pip download --quiet --no-deps metaworld==3.0.0 -d "$TMP"
mkdir -p "$TMP/site" && python3 -m zipfile -e "$TMP"/metaworld-3.0.0-*.whl "$TMP/site"
assets="$TMP/site/metaworld/assets"
find "$assets" -name '*.xml' -exec cat {} + > "$TMP/xml.txt"
find "$assets" -type f ! -name '*.xml' | while read -r f; do
  grep -qF "$(basename "$f")" "$TMP/xml.txt" || rm "$f"
done
rm -rf "$TMP"/site/*.dist-info
mkdir -p "$OUT" && tar cJf "$OUT/rlvla3-mw.tar.xz" -C "$TMP/site" .
cp ../shared/device/stage.sh ../shared/device/setup.sh "$OUT"/  # so a call carrying only this part can stage it
rm -rf "$TMP"
du -sh "$OUT/rlvla3-mw.tar.xz"
