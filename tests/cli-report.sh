#!/bin/sh
# Training report: `qtune train` writes DIR/report.html at the end; `qtune
# report DIR` rewrites it (also from a partly written metrics.jsonl). The page
# is self-contained (no scripts, no external URLs) and its SVG plots hold the
# logged points: every polyline vertex, mapped back through the axis ranges
# the <svg> declares, equals the value in metrics.jsonl for that step.
. tests/lib.sh

$Q train -m $M --data data/demo --iters 12 --batch-size 8 --learning-rate 2e-3 --lr-schedule cosine --warmup 3 \
  --steps-per-eval 4 --steps-per-report 3 --test -t 2 -o "$tmp/run" > "$tmp/t.out" 2>&1 || bad "train: $(tail -3 "$tmp/t.out")"
[ -s "$tmp/run/report.html" ] && ok || bad "train did not write report.html"
grep -q "report: $tmp/run/report.html" "$tmp/t.out" && ok || bad "train does not say where the report is"

check() {  # html metrics
python3 - "$1" "$2" <<'PY'
import json, re, sys
html = open(sys.argv[1]).read()
assert "<script" not in html and not re.search(r'(src|href)="(https?:)?//', html), "not self-contained"
logged = {}
for line in open(sys.argv[2]):
    try:
        r = json.loads(line)
    except ValueError:
        continue
    for k, v in r.items():
        if k != "step":
            logged.setdefault(k, {})[r["step"]] = v
seen = set()
for svg in re.finditer(r'<svg id="([^"]+)"[^>]*data-xmin="([^"]+)" data-xmax="([^"]+)" data-ymin="([^"]+)" '
                       r'data-ymax="([^"]+)" data-plot="([^"]+)">(.*?)</svg>', html, re.S):
    x0, x1, y0, y1 = map(float, svg.group(2, 3, 4, 5))
    L, T, W, H = map(float, svg.group(6).split())
    for pl in re.finditer(r'data-series="([^"]+)"[^>]*points="([^"]*)"', svg.group(7)):
        key = pl.group(1)
        pts = [tuple(map(float, p.split(","))) for p in pl.group(2).split()]
        want = logged[key]
        assert len(pts) == len(want), (key, len(pts), len(want))
        for (px, py), (step, v) in zip(pts, sorted(want.items())):
            if key == "peak_rss":
                v /= 2 ** 30
            step2 = x0 + (px - L) / W * (x1 - x0)
            v2 = y1 - (py - T) / H * (y1 - y0)
            # coordinates are written with 3 decimals: allow 0.01 px
            assert abs(step2 - step) <= 0.01 / W * (x1 - x0) + 1e-9, (key, step, step2)
            assert abs(v2 - v) <= 0.01 / H * (y1 - y0) + 1e-9 * abs(v), (key, step, v, v2)
        seen.add(key)
for key in ("loss", "train_loss", "val_loss", "test_loss", "lr", "tokens_per_s"):
    assert key in seen, "series %s not plotted" % key
final = logged["test_loss"][max(logged["test_loss"])]
assert "%.4f" % final in html.split('<table id="final">')[1].split("</table>")[0], "final test loss missing"
assert "adapter_config.json" in html and "training_state.json" in html and "lora_alpha" in html
print("points ok:", ", ".join(sorted(seen)))
PY
}
check "$tmp/run/report.html" "$tmp/run/metrics.jsonl" && ok || bad "report points"

# qtune report on a run being written: a partial last line is ignored; a
# repeated step after a resume replaces the earlier points
cp "$tmp/run/metrics.jsonl" "$tmp/m"
mkdir "$tmp/live"; head -n 8 "$tmp/m" > "$tmp/live/metrics.jsonl"
printf '{"step": 2, "loss": 9.5, "lr": 0.001, "grad_norm": 1}\n{"step": 3, "lo' >> "$tmp/live/metrics.jsonl"
$Q report "$tmp/live" > /dev/null 2>&1 && ok || bad "report on a partial log"
python3 - "$tmp/live/report.html" <<'PY' && ok || bad "resume replacement"
import re, sys
html = open(sys.argv[1]).read()
pts = re.search(r'data-series="loss"[^>]*points="([^"]*)"', html).group(1).split()
assert len(pts) == 2, pts       # steps 1 and the re-logged 2; the later 3, 4 were dropped
assert "step 2: 9.5<" in html
PY
# errors
$Q report "$tmp/nope" > /dev/null 2>"$tmp/e"; [ $? -eq 1 ] && grep -q "nope/metrics.jsonl" "$tmp/e" && ok || bad "missing dir: $(cat "$tmp/e")"
mkdir "$tmp/empty"; : > "$tmp/empty/metrics.jsonl"
$Q report "$tmp/empty" > /dev/null 2>"$tmp/e"; [ $? -eq 1 ] && grep -q "no metrics" "$tmp/e" && ok || bad "empty log: $(cat "$tmp/e")"

# optional: render in headless Chromium when it is installed (never required)
CH=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$CH" ] && [ -z "$QT_NO_CHROMIUM" ]; then
  timeout 60 "$CH" --headless --no-sandbox --disable-gpu --window-size=1340,1400 --screenshot="$tmp/r.png" \
    "file://$(cd "$tmp/run" && pwd)/report.html" > /dev/null 2>&1
  [ -s "$tmp/r.png" ] && ok || bad "chromium did not render the report"
  timeout 60 "$CH" --headless --no-sandbox --disable-gpu --dump-dom "file://$(cd "$tmp/run" && pwd)/report.html" 2>/dev/null > "$tmp/dom.html"
  check "$tmp/dom.html" "$tmp/run/metrics.jsonl" > /dev/null && ok || bad "the DOM chromium renders lacks the plotted points"
fi

finish cli-report
