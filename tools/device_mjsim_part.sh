#!/bin/bash
# Build .device/mjsim: the kit's `sim` part less robosuite and LIBERO (MuJoCo 3.3.7, PyOpenGL,
# glfw and the GL loader .debs: 5 MB instead of 34). With it, every part MetaWorld needs
# (mw, pydeps, ray, mjsim: about 40 MB) fits in one device call's carry beside the working tree,
# so MT10 needs no staging call (tools/device_metaworld_mt10.sh).
set -euo pipefail
src=.device/sim/rlvla3-sim.tar.xz
[ -f "$src" ] || { echo "no $src: build the device kit first (../shared/device/README.md)" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
xz -dc "$src" | tar -xf - -C "$tmp"
mkdir -p .device/mjsim
(cd "$tmp" && tar -cf - OpenGL _bundle _gl _kit glfw glfw-*.dist-info mujoco mujoco-*.dist-info pyopengl-*.dist-info) \
  | xz -T2 -9 > .device/mjsim/rlvla3-mjsim.tar.xz
cp .device/sim/setup.sh .device/sim/stage.sh .device/mjsim/
echo "built .device/mjsim ($(du -sh .device/mjsim | cut -f1))"
