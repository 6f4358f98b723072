# start-server.sh: sourced by tests/cli-serve*.sh. start_server ARGS... starts
# `$Q serve -m $M --port 0 --api-key $KEY ARGS` (stderr to $tmp/serve.err) and
# waits for the port it prints; sets spid and port (empty when it did not start).
start_server() {
  $Q serve -m $M --port 0 --api-key $KEY "$@" 2>"$tmp/serve.err" &
  spid=$!
  port=""
  for i in $(seq 1 200); do
    port=$(sed -n 's/^listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/serve.err")
    [ -n "$port" ] && break
    kill -0 "$spid" 2>/dev/null || break
    sleep 0.1
  done
}
