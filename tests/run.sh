#!/usr/bin/env bash
# Runs every test: C unit tests (cmocka) and busted specs inside vibex.
# Last line: "N passed, N failed"; exit status non-zero on any failure.
set -u
BIN=${VIBEX_BIN:-./vibex}
BUILD=${BUILD:-build/release}
export BUILD VIBEX_BIN=$BIN
passed=0
failed=0
for t in "$BUILD"/tests/test_*; do
  [ -x "$t" ] || continue
  out=$(timeout -s KILL 300 "$t" 2>&1); rc=$?
  echo "$out"
  p=$(echo "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
  f=$(echo "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
  p=${p:-0}; f=${f:-0}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
done
# busted [VAR=value...] command...: one busted run, its counts added to the totals
busted() {
  local out rc line s f e
  out=$(env "$@" 2>&1); rc=$?
  echo "$out"
  line=$(echo "$out" | grep -aE '^[0-9]+ success' | tail -1)
  s=$(echo "$line" | sed -n 's/^\([0-9]*\) success.*/\1/p')
  f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failure.*/\1/p')
  e=$(echo "$line" | sed -n 's/.* \([0-9]*\) error.*/\1/p')
  s=${s:-0}; f=${f:-0}; e=${e:-0}
  if [ "$rc" -ne 0 ] && [ $((f + e)) -eq 0 ]; then f=1; fi
  passed=$((passed + s)); failed=$((failed + f + e))
}
busted timeout -s KILL 1500 "$BIN" test -o plainTerminal tests/spec
# The indicator kernels have AVX2 paths picked at run time; on a CPU with
# AVX2 the run above took them, so this one checks the SSE2 paths.
busted VIBEX_TA_ISA=sse2 timeout -s KILL 300 "$BIN" test -o plainTerminal tests/spec/ta_spec.lua
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
