#!/bin/sh
# Abuse test of `qtune serve` (tests/serve/abuse.mjs) against a clang
# AddressSanitizer + UndefinedBehaviorSanitizer build with float-cast-overflow
# (build-clang-san/, made here when clang is installed; otherwise the binary
# under test): 200 idle connections, slow clients, clients leaving mid-request
# (streamed and not, running and queued), huge and non-finite numbers, deep
# JSON. A normal request must be answered within 1 s throughout, nothing may
# keep generating for a gone client, and the sanitizers must stay silent
# (-fno-sanitize-recover: any report ends the server, which fails the test;
# LeakSanitizer runs at its exit).
Q=${QTUNE:-build/qtune}
BUILD=${BUILD:-build}
M=models/stories260K.gguf
KEY=sk-qtune-abuse
pass=0; fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
tmp=$(mktemp -d)
spid=""
cleanup() { [ -n "$spid" ] && kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT INT TERM

command -v node >/dev/null || { echo "FAIL: node is needed (Debian: apt-get install nodejs)"; echo "0 passed, 1 failed"; exit 1; }
SAN_FLAGS="-fsanitize=address,undefined,float-cast-overflow"
if command -v clang >/dev/null; then
  if ! make -j"$(nproc)" BUILD=build-clang-san CC=clang OPT="-O1 -fno-omit-frame-pointer" \
       EXTRA_CFLAGS="$SAN_FLAGS -fno-sanitize-recover=all" LDFLAGS="$SAN_FLAGS" build-clang-san/qtune >"$tmp/build.log" 2>&1; then
    echo "FAIL: the clang sanitizer build failed:"; tail -n 20 "$tmp/build.log"; echo "0 passed, 1 failed"; exit 1
  fi
  Q=build-clang-san/qtune
  echo "server: $Q (clang $SAN_FLAGS)"
else
  echo "clang not installed: abusing $Q instead (Debian: apt-get install clang)"
fi
cp tests/serve/abuse.mjs "$tmp/"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
. tests/serve/start-server.sh
start_server -c 4096 --max-tokens-limit 4000 --timeout 2 --idle-timeout 3 -t 2
[ -n "$port" ] && ok || { bad "server did not start: $(cat "$tmp/serve.err")"; echo "$pass passed, $fail failed"; exit 1; }

if node "$tmp/abuse.mjs" "http://127.0.0.1:$port" $KEY >"$tmp/abuse.out" 2>&1; then ok; else bad "abuse checks:"; fi
cat "$tmp/abuse.out"
kill -0 "$spid" 2>/dev/null && ok || bad "server died: $(tail -n 30 "$tmp/serve.err")"
kill "$spid"; wait "$spid"; st=$?; spid=""
[ "$st" -eq 0 ] && ok || bad "server exit status $st after SIGTERM: $(tail -n 30 "$tmp/serve.err")"
if grep -q -E "runtime error|ERROR: (Address|Leak)Sanitizer" "$tmp/serve.err"; then
  bad "sanitizer report: $(grep -A 12 -E "runtime error|ERROR: (Address|Leak)Sanitizer" "$tmp/serve.err" | head -n 30)"
else
  ok
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
