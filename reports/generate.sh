#!/bin/sh
# Regenerates the example reports of reports/README.md with the verigrad command.
#
#   sh reports/generate.sh          # rewrite reports/<example>/report.{json,md,html}
#   sh reports/generate.sh DIR      # write them under DIR instead (tests/test_cli.py does)
#
# PYTHON picks the interpreter (default: python). Each report's `created` timestamp is the
# only thing that changes from one run to the next (SOURCE_DATE_EPOCH fixes it too).
set -u
out="${1:-reports}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
cd "$(dirname "$0")/.." || exit 2          # the repository root: the file target is relative
py="${PYTHON:-python}"
status=0

# run EXPECTED_EXIT_CODE ARGS...: a report whose verdict is part of the example
run() {
    expected=$1
    shift
    "$py" -m verigrad report "$@"
    code=$?
    if [ "$code" -ne "$expected" ]; then
        echo "generate.sh: expected exit $expected, got $code from: verigrad report $*" >&2
        status=1
    fi
}

# 1. pass: d/dx = w = 3, d/dw = x = 2, d/db = 1
run 0 'w*x + b' --at x=2 w=3 b=1 --out "$out/linear"
# 2. pass, with arrays: a 3x2 matrix and a vector
run 0 'sum(tanh(A @ x))' --at 'A=[[0.5,-1.0],[2.0,0.1],[0.3,0.3]]' 'x=[1.0,-0.5]' \
    --out "$out/tanh-layer"
# 3. inconclusive: a kink, where left (-1) and right (+1) derivatives differ
run 3 'abs(x)' --at x=0 --out "$out/abs-kink"
# 4. fail: a custom Function whose backward is off by 0.1%, named as the culprit
run 1 tests/report_examples.py:softplus_wrong --at 'x=[-2,-1,0,1,2]' --out "$out/softplus-wrong"

exit $status
