#!/usr/bin/env bash
# Build the documentation (mkdocs.yml: the guide, and the API reference that
# mkdocstrings generates from the docstrings and _core.pyi) in strict mode:
# a broken link or cross-reference, or a page left out of the nav, fails.
#
#   bash ci/docs.sh                # build into a temp dir, removed on exit
#   bash ci/docs.sh --out DIR      # build into DIR and keep it
#
# The tools are the `docs` extra of pyproject.toml, installed into
# $DHTQUERY_VENV (.venv) without reinstalling dhtquery: mkdocstrings reads the
# source statically, so no compiled core is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${DHTQUERY_VENV:-.venv}
PYTHON=${PYTHON:-python3}

OUT=
while [ $# -gt 0 ]; do
    case $1 in
        --out) OUT=${2:?--out needs a directory}; shift 2 ;;
        *) echo "usage: $0 [--out DIR]" >&2; exit 2 ;;
    esac
done
if [ -z "$OUT" ]; then
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/dhtquery-docs.XXXXXX")
    trap 'rm -rf "$TMP"' EXIT
    OUT=$TMP/site
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
mapfile -t REQUIREMENTS < <("$PY" -c '
import tomllib
with open("pyproject.toml", "rb") as f:
    print(*tomllib.load(f)["project"]["optional-dependencies"]["docs"], sep="\n")
')
"$PY" -m pip install --quiet "${REQUIREMENTS[@]}"

NO_MKDOCS_2_WARNING=1 "$PY" -m mkdocs build --strict --site-dir "$OUT"

# the reference really was generated, from the stub as well as the source
for id in dhtquery.query.QueryManager dhtquery._core.QueryCore.offer_many dhtquery.dht.DhtNode \
    dhtquery.registry.P2PRegistry; do
    grep -rqF "id=\"$id\"" "$OUT/reference" || { echo "ci/docs.sh: no $id in the reference" >&2; exit 1; }
done
echo "docs: $(find "$OUT" -name '*.html' | wc -l) pages, strict build passed"
