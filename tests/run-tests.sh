#!/bin/sh
# Runs every test binary in $BUILD/tests and every tests/cli-*.sh script from
# the repository root; prints one line per test and the closing
# "N passed, N failed" line. Exit status is non-zero if anything failed.
BUILD=${BUILD:-build}
export QTUNE="$BUILD/qtune"
pass=0; fail=0; failed=""
for t in "$BUILD"/tests/test-*; do
  case "$t" in *.o|*.d) continue ;; esac
  [ -x "$t" ] || continue
  name=$(basename "$t")
  if "$t" > "$BUILD/tests/$name.log" 2>&1; then
    pass=$((pass + 1)); echo "PASS $name  ($(tail -n 1 "$BUILD/tests/$name.log"))"
  else
    fail=$((fail + 1)); failed="$failed $name"; echo "FAIL $name"; tail -n 30 "$BUILD/tests/$name.log"
  fi
done
for t in tests/cli-*.sh; do
  [ -f "$t" ] || continue
  name=$(basename "$t" .sh)
  if sh "$t" > "$BUILD/tests/$name.log" 2>&1; then
    pass=$((pass + 1)); echo "PASS $name  ($(tail -n 1 "$BUILD/tests/$name.log"))"
  else
    fail=$((fail + 1)); failed="$failed $name"; echo "FAIL $name"; tail -n 30 "$BUILD/tests/$name.log"
  fi
done
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
