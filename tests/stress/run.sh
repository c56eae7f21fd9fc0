#!/usr/bin/env bash
# make stress: the long versions of the reliability checks; figures go to docs/reliability.md.
# Each part is tests/stress/<part>.py; it runs with --budget long and writes one JSON result.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
parts=("$@")
if [ ${#parts[@]} -eq 0 ]; then
    parts=(hostile_abi fuzz_abi fuzz_wire fuzz_codec kills soak security)
fi
status=0
for part in "${parts[@]}"; do
    echo "== $part"
    if ! .venv/bin/python "tests/stress/$part.py" --budget long --out "$out/$part.json"; then
        echo "!! $part failed" >&2
        status=1
    fi
done
.venv/bin/python tests/stress/report.py "$out" docs/reliability.md
exit $status
