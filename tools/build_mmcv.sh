#!/usr/bin/env bash
# Build an mmcv wheel with compiled ops against the torch of PYTHON and publish it atomically
# into WHEEL_DIR. Called by tools/bootstrap_env.sh on a wheel-cache miss.
#
#   build_mmcv.sh PYTHON WHEEL_DIR LOG
#
# Environment: MMCV_VERSION (required), CONSTRAINTS (pip constraints file), WITH_CUDA=1 for CUDA
# ops, CXX (compiler), MMREPGHOST_MMCV_JOBS (parallel jobs), MMREPGHOST_MMCV_SDIST (a local
# source package instead of downloading one).
#
# mmcv 2.1.0's setup.py hard-codes -std=c++17, but torch >= 2.6 headers need C++20: the build
# uses an unpacked copy of the source package whose setup.py says -std=c++20.
set -euo pipefail
PYTHON=$1 WHEEL_DIR=$2 LOG=$3
: "${MMCV_VERSION:?MMCV_VERSION must be set}"
WITH_CUDA=${WITH_CUDA:-0}
STEP="checking the mmcv build prerequisites"

say() { printf '[bootstrap] %s\n' "$*"; }
fail() {
  printf '[bootstrap] FAILED during: %s\n[bootstrap] hint: %s\n' "$STEP" "$1" >&2
  exit 1
}

CXX_BIN=${CXX:-$(command -v g++ || command -v c++ || true)}
[ -n "$CXX_BIN" ] && command -v "$CXX_BIN" >/dev/null \
  || fail "no C++ compiler found (CXX=${CXX:-unset}); install one (e.g. apt-get install build-essential) or set CXX"
PY_INC=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
[ -f "$PY_INC/Python.h" ] \
  || fail "Python headers are missing ($PY_INC/Python.h); install them (e.g. apt-get install python3-dev for your Python version)"

mkdir -p "$(dirname "$WHEEL_DIR")" "$(dirname "$LOG")"
BUILD=$(mktemp -d "$(dirname "$WHEEL_DIR")/.build-XXXXXX")
trap 'rm -rf "$BUILD"' EXIT

STEP="getting the mmcv $MMCV_VERSION source package"
if [ -n "${MMREPGHOST_MMCV_SDIST:-}" ]; then
  SDIST=$MMREPGHOST_MMCV_SDIST
else
  "$PYTHON" -m pip download --disable-pip-version-check --no-deps --no-binary mmcv \
    --no-build-isolation ${CONSTRAINTS:+-c "$CONSTRAINTS"} -d "$BUILD/sdist" \
    "mmcv==$MMCV_VERSION" >"$LOG" 2>&1 \
    || fail "could not download mmcv==$MMCV_VERSION's source package (log: $LOG)"
  SDIST="$BUILD/sdist/mmcv-$MMCV_VERSION.tar.gz"
fi
[ -f "$SDIST" ] || fail "no source package at $SDIST"

STEP="patching mmcv's setup.py for C++20"
mkdir -p "$BUILD/src"
tar -xzf "$SDIST" -C "$BUILD/src"
SRC="$BUILD/src/mmcv-$MMCV_VERSION"
[ -f "$SRC/setup.py" ] || fail "$SDIST does not contain mmcv-$MMCV_VERSION/setup.py"
sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
grep -q -- '-std=c++20' "$SRC/setup.py" \
  || fail "mmcv's setup.py has no -std=c++17 flag to patch; the source package changed"

STEP="compiling mmcv $MMCV_VERSION ops"
if [ "$WITH_CUDA" = 1 ]; then
  export FORCE_CUDA=1
else  # a visible GPU would make mmcv's setup.py build CUDA ops
  export FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=""
fi
JOBS=${MMREPGHOST_MMCV_JOBS:-$(nproc 2>/dev/null || echo 2)}
say "compiling mmcv ops, about 15 minutes on 2 cores (log: $LOG)"
start=$(date +%s)
( cd "$SRC" && MMCV_WITH_OPS=1 MAX_JOBS=$JOBS CXX=$CXX_BIN "$PYTHON" -m pip wheel -v \
    --disable-pip-version-check --no-build-isolation --no-deps -w "$BUILD/wheel" . ) \
  >>"$LOG" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  sleep 30
  if kill -0 "$pid" 2>/dev/null; then
    say "  ... still compiling mmcv: $(( $(date +%s) - start ))s, $(grep -c -- '-c .*\.cpp' "$LOG" || true) C++ files so far"
  fi
done
wait "$pid" || { tail -n 15 "$LOG" >&2; fail "the mmcv build failed; the full log is $LOG"; }
say "mmcv compiled in $(( $(date +%s) - start ))s"

STEP="publishing the mmcv wheel to $WHEEL_DIR"
# A rename is atomic: the cache never holds a half-written wheel directory.
rm -rf "$WHEEL_DIR"
mv "$BUILD/wheel" "$WHEEL_DIR"
