#!/bin/sh
# run-bench.sh: prompt-processing and generation speed of qtune, and optionally
# of llama.cpp's llama-bench on the very same GGUF files, as a markdown table.
#
#   bench/run-bench.sh MODELS_DIR [NAME...]      (run from the repository root, after `make bench`)
#
# NAME is <model>-<type>, model one of tinyllama, llama2-7b, mistral-7b, smoke and
# type one of make-model's types; default: tinyllama-{q4_0,q8_0,f16} llama2-7b-{q4_0,q8_0,f16}.
# Missing files are generated into MODELS_DIR with build/bench/make-model
# (random weights, real shapes); 7B F16 is skipped when the disk is short.
#
# Environment:
#   LLAMA_BENCH  path of an already-built llama.cpp llama-bench; unset: no peer column.
#                (This repository never builds the peer; build llama.cpp yourself.)
#   QTUNE        qtune binary (default build/qtune)
#   MAKE_MODEL   make-model binary (default build/bench/make-model)
#   THREADS      thread counts to test (default "1 2")
#   REPS         repetitions per cell; the median is reported (default 3)
#   PP, TG       prompt tokens and generated tokens (default 512 and 64)
#
# qtune and the peer are run alternately, REPS times each, because a shared host
# is noisy: slow phases then hit both rather than one.
#
# Both print markdown rows; we read qtune's "| .. | pp512 | 123.45 (min .., max ..) |"
# rows from `qtune bench -m MODEL -p PP -n TG -t N -r 1` and llama-bench's -o jsonl.
set -eu

MODELS_DIR=${1:?usage: bench/run-bench.sh MODELS_DIR [NAME...]}
shift
QTUNE=${QTUNE:-build/qtune}
MAKE_MODEL=${MAKE_MODEL:-build/bench/make-model}
THREADS=${THREADS:-"1 2"}
REPS=${REPS:-3}
PP=${PP:-512}
TG=${TG:-64}
LLAMA_BENCH=${LLAMA_BENCH:-}
NAMES=${*:-"tinyllama-q4_0 tinyllama-q8_0 tinyllama-f16 llama2-7b-q4_0 llama2-7b-q8_0 llama2-7b-f16"}

mkdir -p "$MODELS_DIR"

log() { echo "$*" >&2; }

# Expected file size in GB (params x bytes per weight), for the disk check.
size_gb() {
    case $1 in
        tinyllama) params=1.10 ;; llama2-7b) params=6.74 ;; mistral-7b) params=7.24 ;; *) params=0.01 ;;
    esac
    case $2 in
        f32) bpw=4 ;; f16|bf16) bpw=2 ;; q8_0) bpw=1.0625 ;; q6_k) bpw=0.82 ;;
        q5_0|q5_1|q5_k) bpw=0.69 ;; *) bpw=0.57 ;;
    esac
    echo "$params $bpw" | awk '{ printf "%d", $1 * $2 + 1 }'
}

# Make MODELS_DIR/NAME.gguf if missing; prints its path, or nothing if skipped.
ensure_model() {
    name=$1
    file=$MODELS_DIR/$name.gguf
    if [ -f "$file" ]; then echo "$file"; return; fi
    model=${name%-*}
    type=${name##*-}
    case $model in
        tinyllama) preset=tinyllama-1.1b ;;
        llama2-7b|mistral-7b|smoke) preset=$model ;;
        *) log "skip $name: unknown model '$model'"; return ;;
    esac
    need=$(size_gb "$model" "$type")
    avail=$(df -P -k "$MODELS_DIR" | awk 'NR == 2 { printf "%d", $4 / 1048576 }')
    if [ $((need + 5)) -gt "$avail" ]; then
        log "skip $name: needs ~${need} GB, ${avail} GB free in $MODELS_DIR"
        return
    fi
    if [ ! -x "$MAKE_MODEL" ]; then log "skip $name: $MAKE_MODEL missing (make bench)"; return; fi
    log "generating $file (~${need} GB)"
    if ! "$MAKE_MODEL" --preset "$preset" --type "$type" -o "$file" >&2; then
        log "skip $name: make-model failed"
        return
    fi
    echo "$file"
}

# Prints "PP_TOKS TG_TOKS" for one run of qtune (one repetition after its warm-up),
# or "- -" on failure.
run_qtune() {
    if [ ! -x "$QTUNE" ]; then echo "- -"; return; fi
    out=$("$QTUNE" bench -m "$1" -p "$PP" -n "$TG" -t "$2" -r 1 -v 0 2>/dev/null) || { echo "- -"; return; }
    echo "$out" | awk -F'|' -v pp="pp$PP" -v tg="tg$TG" '
        # the markdown row "| ... | pp512 | 123.45 (min ..) |": first number after the test cell
        function speed(   i, c, v) {
            for (i = 1; i < NF; i++) {
                c = $i; gsub(/^[ \t]+|[ \t]+$/, "", c)
                if (c == pp || c == tg) { v = $(i + 1); if (match(v, /[0-9]+(\.[0-9]+)?/)) return substr(v, RSTART, RLENGTH) }
            }
            return ""
        }
        { s = speed() }
        s != "" && index($0, pp) && p == "" { p = s }
        s != "" && index($0, tg) && t == "" { t = s }
        END { print (p == "" ? "-" : p), (t == "" ? "-" : t) }'
}

# Prints "PP_TOKS TG_TOKS" for one llama-bench run (one repetition, after its warm-up).
run_peer() {
    if [ -z "$LLAMA_BENCH" ]; then echo "- -"; return; fi
    out=$("$LLAMA_BENCH" -m "$1" -p "$PP" -n "$TG" -t "$2" -r 1 -o jsonl 2>/dev/null) || { echo "- -"; return; }
    echo "$out" | awk '
        function num(key,   s) {
            if (!match($0, "\"" key "\": *[0-9.e+-]+")) return ""
            s = substr($0, RSTART, RLENGTH); sub(/^[^:]*: */, "", s); return s
        }
        { np = num("n_prompt"); ng = num("n_gen"); ts = num("avg_ts")
          if (np + 0 > 0 && ng + 0 == 0) p = ts
          if (ng + 0 > 0 && np + 0 == 0) t = ts }
        END { print (p == "" ? "-" : p), (t == "" ? "-" : t) }'
}

# Median of the numbers given as arguments ("-" entries ignored); "-" if none.
median() {
    printf '%s\n' "$@" | grep -E '^[0-9.]+(e[+-]?[0-9]+)?$' | sort -g |
        awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'
}
fmt() { awk -v a="$1" 'BEGIN { if (a == "-") print "-"; else printf "%.2f", a }'; }

# 1-minute load average when a cell starts: above ~0.5 on an idle-looking host
# means another process competes for the cores, and spinning thread pools
# (llama.cpp's OpenMP build in particular) can lose an order of magnitude.
loadavg() { if [ -r /proc/loadavg ]; then cut -d' ' -f1 /proc/loadavg; else echo "-"; fi; }

echo "| model | threads | qtune pp$PP | llama.cpp pp$PP | pp ratio | qtune tg$TG | llama.cpp tg$TG | tg ratio | load |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for name in $NAMES; do
    file=$(ensure_model "$name")
    [ -n "$file" ] || continue
    for t in $THREADS; do
        qp=""; qt=""; lp=""; lt=""; load=$(loadavg)
        i=0
        while [ "$i" -lt "$REPS" ]; do
            set -- $(run_qtune "$file" "$t"); qp="$qp $1"; qt="$qt $2"
            set -- $(run_peer "$file" "$t"); lp="$lp $1"; lt="$lt $2"
            i=$((i + 1))
        done
        mqp=$(median $qp); mqt=$(median $qt); mlp=$(median $lp); mlt=$(median $lt)
        echo "| $name | $t | $(fmt "$mqp") | $(fmt "$mlp") | $(ratio "$mqp" "$mlp") | $(fmt "$mqt") | $(fmt "$mlt") | $(ratio "$mqt" "$mlt") | $load |"
    done
done
