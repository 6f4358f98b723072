# tests/lib.sh: what the tests/cli-*.sh scripts share; sourced from the
# repository root (`. tests/lib.sh`): the binary under test, the bundled model,
# pass/fail counters, a temporary folder removed at exit, expect_err and the
# closing line. Not a test itself (run-tests.sh runs cli-*.sh only).
Q=${QTUNE:-build/qtune}
M=models/stories260K.gguf
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# expect_err CODE WORD COMMAND...: the command exits with CODE and prints
# exactly one "error" line, holding WORD
expect_err() {
  code=$1; word=$2; shift 2
  "$@" >/dev/null 2>"$tmp/e" < /dev/null; rc=$?
  if [ $rc -eq "$code" ] && grep -q -- "$word" "$tmp/e" && [ "$(grep -c '^error' "$tmp/e")" -eq 1 ]; then ok
  else bad "'$*' -> rc $rc, stderr: $(cat "$tmp/e")"; fi
}
# finish NAME: the closing line and the exit status
finish() { echo "$1: $pass passed, $fail failed"; [ $fail -eq 0 ]; }
