#!/bin/sh
# Runs every test binary in $BUILD/tests and every tests/cli-*.sh script from
# the repository root; prints one line per test and the closing
# "N passed, N failed" line. Exit status is non-zero if anything failed.
# A test that could not run (it says why and ends "0 passed, 0 failed") is
# listed as SKIP and counted neither way.
BUILD=${BUILD:-build}
export QTUNE="$BUILD/qtune"
pass=0; fail=0; failed=""; skipped=""

# run NAME COMMAND...: one test, its output in $BUILD/tests/NAME.log
run() {
  name=$1; shift
  log="$BUILD/tests/$name.log"
  if "$@" > "$log" 2>&1; then
    if tail -n 1 "$log" | grep -q '^\(.*: \)\{0,1\}0 passed, 0 failed$'; then
      skipped="$skipped $name"
      echo "SKIP $name  ($(grep -m 1 '^skipped' "$log" || echo 'no checks ran'))"
    else
      pass=$((pass + 1)); echo "PASS $name  ($(tail -n 1 "$log"))"
    fi
  else
    fail=$((fail + 1)); failed="$failed $name"; echo "FAIL $name"; tail -n 30 "$log"
  fi
}

for t in "$BUILD"/tests/test-*; do
  case "$t" in *.o|*.d|*.log) continue ;; esac
  [ -x "$t" ] || continue
  run "$(basename "$t")" "$t"
done
for t in tests/cli-*.sh; do
  [ -f "$t" ] || continue
  run "$(basename "$t" .sh)" sh "$t"
done
[ -n "$skipped" ] && echo "skipped (not counted):$skipped"
[ -n "$failed" ] && echo "failed:$failed"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
