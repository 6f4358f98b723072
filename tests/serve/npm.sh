# tests/serve/npm.sh: sourced by the serve tests (tests/cli-serve*.sh), which
# define $tmp first.
# need_openai_client DIR: the official OpenAI JavaScript client (npm package
# "openai") and the ajv schema validator installed in DIR (git-ignored under
# build/), once for every serve test; on failure says why and exits failed
need_openai_client() {
  command -v node >/dev/null && command -v npm >/dev/null ||
    { echo "FAIL: node and npm are needed (Debian: apt-get install nodejs npm)"; echo "0 passed, 1 failed"; exit 1; }
  [ -f "$1/node_modules/openai/package.json" ] && [ -f "$1/node_modules/ajv/package.json" ] && return 0
  mkdir -p "$1"
  [ -f "$1/package.json" ] || echo '{"name": "qtune-serve-test", "private": true, "type": "module"}' > "$1/package.json"
  if ! (cd "$1" && npm install --no-audit --no-fund openai ajv >"$tmp/npm.log" 2>&1); then
    echo "FAIL: npm install openai ajv failed (the serve tests need the official OpenAI client and ajv from the npm registry):"
    tail -n 20 "$tmp/npm.log"
    echo "0 passed, 1 failed"
    exit 1
  fi
}
