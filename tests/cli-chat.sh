#!/bin/sh
# qtune chat driven through a pipe on the bundled stories260K (it has no chat
# template: --chat-template chooses one). The second turn reuses the first
# turn's KV cache (only the new tokens are evaluated) and its answer is the
# one a fresh process gives for the same conversation loaded from a file, and
# not the one without the first turn; /save and /load round-trip; /clear
# empties the cache; an overflowing conversation drops its oldest turns but
# keeps the system prompt; template errors are clear.
. tests/lib.sh
CHAT="$Q chat -m $M --chat-template chatml --temp 0 -n 24 -c 512 --system You_tell_stories."

# two turns through a pipe
printf 'Hello there\nWhat did the cat do?\n/save %s\n/exit\n' "$tmp/a.json" | $CHAT >"$tmp/a.out" 2>"$tmp/a.err"
[ $? -eq 0 ] && ok || bad "chat exit status: $(cat "$tmp/a.err")"
turn() {  # turn N FIELD FILE: prompt | reused | evaluated | cache
  sed -n "s/^\[turn $1: prompt \([0-9]*\) tokens (\([0-9]*\) from the cache, \([0-9]*\) evaluated).*cache \([0-9]*\)\/.*/\1 \2 \3 \4/p" "$3" |
    awk -v f="$2" '{ if (f == "prompt") print $1; if (f == "reused") print $2; if (f == "evaluated") print $3; if (f == "cache") print $4 }'
}
p1=$(turn 1 prompt "$tmp/a.err"); c1=$(turn 1 cache "$tmp/a.err")
p2=$(turn 2 prompt "$tmp/a.err"); r2=$(turn 2 reused "$tmp/a.err"); e2=$(turn 2 evaluated "$tmp/a.err"); c2=$(turn 2 cache "$tmp/a.err")
if [ -n "$p1" ] && [ -n "$p2" ]; then
  ok
  [ "$(turn 1 reused "$tmp/a.err")" -eq 0 ] && ok || bad "turn 1 found tokens in an empty cache"
  # everything turn 1 left in the cache (its prompt and answer) is reused
  [ "$r2" -eq "$c1" ] && [ "$r2" -gt "$p1" ] && ok || bad "turn 2 reused $r2 tokens, cache held $c1 (turn 1 prompt $p1)"
  [ "$e2" -eq $((p2 - r2)) ] && [ "$e2" -lt "$p2" ] && ok || bad "turn 2 evaluated $e2 of $p2 prompt tokens"
  [ "$c2" -gt "$c1" ] && ok || bad "cache position did not grow: $c1 -> $c2"
else
  bad "no per-turn usage lines: $(cat "$tmp/a.err")"
fi
[ "$(grep -c . "$tmp/a.out")" -ge 2 ] && ok || bad "expected two answers: $(cat "$tmp/a.out")"

# the saved conversation: system, user, assistant, user, assistant
python3 -c "
import json, sys
m = json.load(open(sys.argv[1]))['messages']
assert [x['role'] for x in m] == ['system', 'user', 'assistant', 'user', 'assistant'], m
assert m[0]['content'] == 'You_tell_stories.' and m[3]['content'] == 'What did the cat do?'
" "$tmp/a.json" && ok || bad "saved conversation: $(cat "$tmp/a.json")"

# the second answer depends on the first turn: a fresh process given the first
# turn by /load answers the same (cache reuse = full recompute), one without it differs
python3 -c "
import json, sys
m = json.load(open(sys.argv[1]))['messages'][:3]
json.dump({'messages': m}, open(sys.argv[2], 'w'))
" "$tmp/a.json" "$tmp/first.json"
last() { python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['messages'][-1]['content'])" "$1"; }
ans2=$(last "$tmp/a.json")
printf '/load %s\nWhat did the cat do?\n/save %s\n' "$tmp/first.json" "$tmp/b.json" | $CHAT >/dev/null 2>"$tmp/b.err"
[ "$(last "$tmp/b.json")" = "$ans2" ] && ok || bad "reloaded turn 2: '$(last "$tmp/b.json")' vs '$ans2'"
grep -q "loaded 3 messages" "$tmp/b.err" && ok || bad "/load message: $(cat "$tmp/b.err")"
printf 'What did the cat do?\n/save %s\n' "$tmp/c.json" | $CHAT >/dev/null 2>&1
[ "$(last "$tmp/c.json")" != "$ans2" ] && ok || bad "turn 2 answer does not depend on turn 1: '$ans2'"

# /load then /save writes the same file back
printf '/load %s\n/save %s\n' "$tmp/a.json" "$tmp/a2.json" | $CHAT >/dev/null 2>&1
cmp -s "$tmp/a.json" "$tmp/a2.json" && ok || bad "/save after /load differs"

# /clear: the next turn starts from an empty cache, the system prompt stays
printf 'Hello there\n/save %s\n/clear\nHello there\n/save %s\n' "$tmp/d1.json" "$tmp/d.json" | $CHAT >/dev/null 2>"$tmp/d.err"
[ "$(turn 2 reused "$tmp/d.err")" = 0 ] && ok || bad "/clear kept the cache: $(cat "$tmp/d.err")"
cmp -s "$tmp/d1.json" "$tmp/d.json" && ok || bad "/clear: same question, other answer"
python3 -c "
import json, sys
m = json.load(open(sys.argv[1]))['messages']
assert [x['role'] for x in m] == ['system', 'user', 'assistant'], m
" "$tmp/d.json" && ok || bad "/clear conversation: $(cat "$tmp/d.json")"

# a small context: the oldest turns go, the system prompt stays, every turn answers
long="Tell me a long story about a girl and her dog who went to the park to play"
printf '%s 1\n%s 2\n%s 3\n%s 4\n/save %s\n' "$long" "$long" "$long" "$long" "$tmp/e.json" |
  $Q chat -m $M --chat-template zephyr --temp 0 -n 24 -c 128 --system "Be brief." >"$tmp/e.out" 2>"$tmp/e.err"
grep -q "context full: dropped" "$tmp/e.err" && ok || bad "no turns dropped in a 128-token context: $(cat "$tmp/e.err")"
[ "$(grep -c '^\[turn' "$tmp/e.err")" -eq 4 ] && ok || bad "not every turn answered: $(cat "$tmp/e.err")"
python3 -c "
import json, sys
m = json.load(open(sys.argv[1]))['messages']
assert m[0] == {'role': 'system', 'content': 'Be brief.'}, m
assert m[-2]['content'].endswith(' 4') and len(m) < 9, m
" "$tmp/e.json" && ok || bad "overflowed conversation: $(cat "$tmp/e.json")"

# template errors
echo hi | $Q chat -m $M >/dev/null 2>"$tmp/f.err" && bad "no template accepted" || ok
grep -q -- "--chat-template" "$tmp/f.err" && ok || bad "no-template message: $(cat "$tmp/f.err")"
echo hi | $Q chat -m $M --chat-template vicuna >/dev/null 2>"$tmp/f.err" && bad "unknown template accepted" || ok
grep -q 'unknown chat template "vicuna"' "$tmp/f.err" && ok || bad "unknown-template message: $(cat "$tmp/f.err")"
echo hi | $Q chat -m $M --chat-template gemma --system S >/dev/null 2>"$tmp/f.err" && bad "gemma took a system prompt" || ok
grep -q "system" "$tmp/f.err" && ok || bad "gemma system message: $(cat "$tmp/f.err")"


# a model's own Jinja template from a file: --verbose-prompt and /prompt print exactly what python3-jinja2
# renders for it (Llama 3.1's template: the dated system header; stories260K adds BOS, the template writes it too)
T=tests/data/chat-templates/corpus/meta-llama-Llama-3.1-8B-Instruct.jinja
printf 'Hi\n/prompt\n/exit\n' | $Q chat -m $M --chat-template-file $T --temp 0 -n 4 -c 512 --verbose-prompt --system Sys \
  >"$tmp/g.out" 2>"$tmp/g.err" && ok || bad "chat with --chat-template-file: $(cat "$tmp/g.err")"
python3 - "$tmp/g.err" <<'PY' && ok || bad "rendered prompt: $(cat "$tmp/g.err")"
import sys, re
err = open(sys.argv[1]).read()
want = ("<s><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nSys<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
first = err.split("[prompt: ")[1].split("]\n", 1)[1].split("\n[end of prompt]")[0]
# the template's date is strftime_now('%d %b %Y'): today; compare the rest
first = re.sub(r"Today Date: \d\d \w\w\w \d\d\d\d", "Today Date: 26 Jul 2024", first)
assert first == want, repr(first)
assert "[end of prompt]" in err.split("[turn 1", 1)[1], "no /prompt output"
PY
grep -q "chat template jinja (tests/data" "$tmp/g.err" && ok || bad "template description: $(grep 'chat template' "$tmp/g.err")"
echo hi | $Q chat -m $M --chat-template-file "$tmp/nope.jinja" >/dev/null 2>"$tmp/h.err" && bad "missing template file accepted" || ok
grep -q "nope.jinja" "$tmp/h.err" && ok || bad "missing file message: $(cat "$tmp/h.err")"
printf '{%% for x in %%}' >"$tmp/bad.jinja"
echo hi | $Q chat -m $M --chat-template-file "$tmp/bad.jinja" >/dev/null 2>"$tmp/h.err" && bad "bad template accepted" || ok
grep -q "bad.jinja chat template: line 1" "$tmp/h.err" && ok || bad "bad template message: $(cat "$tmp/h.err")"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
