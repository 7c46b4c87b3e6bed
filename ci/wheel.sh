#!/usr/bin/env bash
# Build what we ship and try it the way a user would: an sdist, then an abi3
# manylinux wheel built from that sdist (maturin --zig links against an old
# glibc, no docker needed); check `auditwheel show` gives a manylinux tag for
# glibc <= 2.28; install the wheel into a fresh virtualenv with no cargo on
# PATH and run the CLI from a directory outside the source tree.
#
#   bash ci/wheel.sh               # build and check in a temp dir, removed on exit
#   bash ci/wheel.sh --out dist    # the same, then copy the wheel and sdist to dist/
#
# The build tools (maturin, ziglang, auditwheel) go into $DHTQUERY_VENV (.venv);
# cargo's build cache is target/wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

VENV=${DHTQUERY_VENV:-.venv}
PYTHON=${PYTHON:-python3}
# manylinux2014 = glibc 2.17; the check below only requires <= 2.28
COMPATIBILITY=${DHTQUERY_MANYLINUX:-manylinux2014}
MAX_GLIBC_MINOR=28

KEEP=
while [ $# -gt 0 ]; do
    case $1 in
        --out) KEEP=${2:?--out needs a directory}; shift 2 ;;
        *) echo "usage: $0 [--out DIR]" >&2; exit 2 ;;
    esac
done

step() { printf '\n==> %s\n' "$*"; }
fail() { echo "ci/wheel.sh: $*" >&2; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/dhtquery-wheel.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
mkdir "$TMP/dist" "$TMP/src" "$TMP/run"

step "build tools in $VENV (maturin, ziglang, auditwheel)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
TOOLS=$(cd "$VENV/bin" && pwd)
"$TOOLS/python" -m pip install --quiet 'maturin>=1.9.4,<2' 'ziglang==0.17.1' 'auditwheel>=6,<7'

step "sdist"
"$TOOLS/maturin" sdist --out "$TMP/dist"
SDIST=$(ls "$TMP"/dist/dhtquery-*.tar.gz) || fail "no sdist built"
tar -xzf "$SDIST" -C "$TMP/src"
SRC=$(ls -d "$TMP"/src/dhtquery-*)
# The sdist's files carry a fixed old mtime (reproducible builds): made new
# here, so cargo's cache in target/wheel never takes them for built already.
find "$SRC" -type f -exec touch {} +
for f in Cargo.toml Cargo.lock pyproject.toml README.md rust/lib.rs \
    python/dhtquery/__init__.py python/dhtquery/_core.pyi python/dhtquery/py.typed; do
    [ -e "$SRC/$f" ] || fail "the sdist lacks $f"
done
echo "$(basename "$SDIST") ($(du -k "$SDIST" | cut -f1) KiB)"

step "wheel from the sdist: maturin build --release --zig --compatibility $COMPATIBILITY"
# ziglang's zig is found through the tools venv on PATH
PATH="$TOOLS:$PATH" "$TOOLS/maturin" build --quiet --release --locked --zig \
    --compatibility "$COMPATIBILITY" --manifest-path "$SRC/Cargo.toml" \
    --target-dir "$ROOT/target/wheel" --out "$TMP/dist"
WHEEL=$(ls "$TMP"/dist/dhtquery-*.whl) || fail "no wheel built"
case $(basename "$WHEEL") in
    *-cp311-abi3-*manylinux*_x86_64.whl | *-cp311-abi3-*manylinux*_aarch64.whl) ;;
    *) fail "unexpected wheel tag: $(basename "$WHEEL")" ;;
esac
echo "$(basename "$WHEEL") ($(du -k "$WHEEL" | cut -f1) KiB)"

step "auditwheel show"
SHOW=$("$TOOLS/auditwheel" show "$WHEEL" | tr -s ' \n' '  ')
TAG=$(printf '%s' "$SHOW" | sed -n 's/.*consistent with the following platform tag: "\([^"]*\)".*/\1/p')
[ -n "$TAG" ] || fail "auditwheel show gave no platform tag: $SHOW"
echo "auditwheel: consistent with $TAG"
MINOR=$(printf '%s' "$TAG" | sed -n 's/^manylinux_2_\([0-9]*\)_.*/\1/p')
[ -n "$MINOR" ] && [ "$MINOR" -le "$MAX_GLIBC_MINOR" ] ||
    fail "$TAG is not a manylinux tag for glibc <= 2.$MAX_GLIBC_MINOR"

step "install the wheel into a fresh virtualenv, no cargo on PATH"
"$PYTHON" -m venv "$TMP/venv"
CLEAN_PATH="$TMP/venv/bin:/usr/bin:/bin"
# a cargo from the system's packages would be in /usr/bin: then the venv alone
if env PATH="$CLEAN_PATH" sh -c 'command -v cargo || command -v rustc' >/dev/null; then
    CLEAN_PATH="$TMP/venv/bin"
fi
run() { (cd "$TMP/run" && env PATH="$CLEAN_PATH" "$@"); }
run sh -c '! command -v cargo >/dev/null' || fail "cargo is on the clean PATH"
run python -m pip install --quiet --disable-pip-version-check "$WHEEL"
run python -c '
import sys, dhtquery, dhtquery._core
assert dhtquery.__file__.startswith(sys.prefix), dhtquery.__file__
print("dhtquery", dhtquery.__version__, "from", dhtquery._core.__file__)
'

# Each command's output goes to a log: its tail is shown, or all of it if it fails.
check() {
    local name=$1; shift
    step "$*"
    if run "$@" >"$TMP/$name.log" 2>&1; then
        tail -n 4 "$TMP/$name.log"
    else
        cat "$TMP/$name.log"
        fail "'$*' failed from the installed wheel"
    fi
}
check demo dhtquery demo --nodes 5 --packages 100 --backend rust
check bench dhtquery bench core --quick

if [ -n "$KEEP" ]; then
    mkdir -p "$KEEP"
    cp "$WHEEL" "$SDIST" "$KEEP"/
    step "copied to $KEEP/: $(basename "$WHEEL") $(basename "$SDIST")"
fi
