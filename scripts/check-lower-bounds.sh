#!/usr/bin/env bash
# Are the lower bounds in pyproject.toml true? Resolve the lowest allowed version of every direct
# dependency (`uv pip compile --resolution lowest-direct`, for Python 3.11), install exactly that
# into a throwaway virtual environment with telex itself, and run the unit tests there.
# Prints the versions it tested; exits non-zero when a bound is false.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$UV" pip compile pyproject.toml --extra dev --resolution lowest-direct --python-version 3.11 \
    --quiet --no-header --no-annotate -o "$work/lowest.txt"
"$UV" venv --quiet --python "$PYTHON" "$work/venv"
"$UV" pip install --quiet --python "$work/venv/bin/python" -r "$work/lowest.txt"
# telex from this tree, without dependencies: only the lowest versions are there to import.
"$UV" pip install --quiet --python "$work/venv/bin/python" --no-deps .

direct=$("$work/venv/bin/python" - <<'PY'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
names = project["dependencies"] + project["optional-dependencies"]["dev"]
print(" ".join(sorted({re.split(r"[\[<>=!~; ]", n, maxsplit=1)[0].lower() for n in names})))
PY
)
echo "lowest direct versions tested:"
for name in $direct; do
    grep -i "^${name}==" "$work/lowest.txt" | sed 's/^/  /' || true
done
# The unit tests, and the HTTP client against real local servers (aiohttp, lxml, feeds).
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider tests/unit tests/integration/test_poller_http.py
