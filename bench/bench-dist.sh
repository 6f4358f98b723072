#!/bin/sh
# bench-dist.sh: data-parallel scaling of `qtune train` on one machine:
# N ranks x 1 thread (mpirun) against 1 rank x 1 thread, same per-rank batch,
# so the 2-rank run trains on twice the tokens per step.
#
#   bench/bench-dist.sh MODEL.gguf [SEQ] [ITERS] [RANKS]   (from the repository root, after `make`)
#
# MODEL: e.g. a TinyLlama-shape file from build/bench/make-model. The data is
# generated: records of random words cut to exactly SEQ tokens (equal work per rank). Prints tokens/s per
# step (the median of the steps after the first, which pays the page faults)
# for both runs and their ratio, plus the measured all-reduce wait.
set -eu
MODEL=${1:?usage: bench/bench-dist.sh MODEL.gguf [SEQ] [ITERS] [RANKS]}
SEQ=${2:-256}
ITERS=${3:-4}
RANKS=${4:-2}
QTUNE=${QTUNE:-build/qtune}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/data"
# random words: about 1.3 tokens per word in a Llama vocabulary
python3 - "$tmp/data/train.jsonl" "$SEQ" <<'EOP'
import json, random, sys
random.seed(1)
words = "the a robot river light small quiet machine garden found slowly under bright over near story".split()
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        n = int(sys.argv[2])   # ~1.3 tokens per word: every record is cut to SEQ tokens, so ranks get equal work
        f.write(json.dumps({"text": " ".join(random.choice(words) for _ in range(n))}) + "\n")
EOP
common="-m $MODEL --data $tmp/data -b 1 --iters $ITERS --steps-per-report 1 --steps-per-eval 0 --save-every 0 -t 1 --targets q,k,v,o,gate -r 16 --max-seq-len $SEQ"
med() { sed -n 's/.*| \([0-9.]*\) tokens\/s.*/\1/p' "$1" | tail -n +2 | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
$QTUNE train $common -o "$tmp/one" > "$tmp/one.out" 2>&1
mpirun --oversubscribe ${MPIRUN_ARGS:-} -np "$RANKS" $QTUNE train $common -o "$tmp/n" > "$tmp/n.out" 2>&1
one=$(med "$tmp/one.out"); n=$(med "$tmp/n.out")
wait_ms=$(sed -n 's/.*all-reduce wait \([0-9]*\) ms.*/\1/p' "$tmp/n.out" | tail -n +2 | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
echo "| ranks x threads | tokens/s (median of steps 2..$ITERS) |"
echo "|---|---:|"
echo "| 1 x 1 | $one |"
echo "| $RANKS x 1 | $n |"
awk -v a="$one" -v b="$n" -v w="$wait_ms" -v r="$RANKS" 'BEGIN { printf "ratio %.2fx with %d ranks; all-reduce wait %s ms/step\n", b / a, r, w }'
grep -h "iter" "$tmp/one.out" "$tmp/n.out" | sed 's/^/  /'
