#!/usr/bin/env bash
# Issue #3 ladder, GPU rungs in one call (everything here also runs on CPU with --device cpu, only slower).
#   DATA: data root (default ../shared/data);  OUT: where results are packed (default runs/ladder_gpu_out)
#   EVAL=0 trains only (training reads the mpox photos alone)
# Trains, in parallel on one GPU:
#   bg4 / bg8   background reference inpainters: the shipped recipe on mpox photos whose 4x4 / 8x8 tiles are
#               shuffled every step (colour and texture kept, lesion structure destroyed), 2000 steps
#   long128     the shipped recipe (same architecture, 128 px) trained far longer (time-limited)
#   wide224     a stronger inpainter: width 40, native 224 px, masks scaled with it (time-limited)
# then evaluates each on the fixed protocol (measurements.csv keeps every raw number for CPU re-analysis).
set -uo pipefail
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/ladder_gpu_out}
DEVICE=${DEVICE:-cuda}
TRAIN_MIN=${TRAIN_MIN:-4.5}       # wall-time limit of every run
BG_STEPS=${BG_STEPS:-2000}
CKPT=${CKPT:-500}                  # checkpoint (and val) interval of the long runs
EVAL_ARGS=${EVAL_ARGS:-}           # e.g. "--per-class-limit 2" for a smoke test
R=runs/ladder
mkdir -p "$R" "$OUT"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-3}
py=${PYTHON:-python3}

cat > "$R/bg4.json" <<EOF
{"train": {"steps": $BG_STEPS, "tile_shuffle": 4}}
EOF
cat > "$R/bg8.json" <<EOF
{"train": {"steps": $BG_STEPS, "tile_shuffle": 8}}
EOF
cat > "$R/long128.json" <<EOF
{"train": {"steps": 30000, "checkpoint_every": $CKPT}}
EOF
cat > "$R/wide224.json" <<EOF
{"preprocess": {"size": 224}, "masks": {"scales": [14, 28, 56]}, "model": {"width": 40},
 "measure": {"map": "ssim", "reference": "gauss", "heatmap_max": 0.5},
 "train": {"steps": 30000, "batch_size": 16, "checkpoint_every": $CKPT}}
EOF

train() {  # name [extra args]
  local name=$1; shift
  $py -m mim_core train --data "$DATA" --out "$R/$name" --config "$R/$name.json" --threads 3 \
      --device "$DEVICE" --no-resume "$@" > "$R/$name.log" 2>&1
  tar czf "$OUT/$name.tgz" -C "$R" "$name/model.pt" "$name/model.json" "$name/training.json" "$name.log"
  echo "trained $name: $(tail -c 300 "$R/$name.log" | tr '\r' '\n' | tail -1)"
}
for n in bg4 bg8 long128 wide224; do train $n --time-limit-min "$TRAIN_MIN" & done
wait

evaluate() {  # eval-name weights [extra args]
  local name=$1 weights=$2; shift 2
  $py -m mim_core evaluate --data "$DATA" --weights "$weights" --out "$R/eval_$name" --device "$DEVICE" $EVAL_ARGS "$@" \
      > "$R/eval_$name.log" 2>&1
  tar czf "$OUT/eval_$name.tgz" -C "$R" --exclude='*.png' "eval_$name" "eval_$name.log"
  echo "evaluated $name: $(tail -n 1 "$R/eval_$name.log")"
}
[ "${EVAL:-1}" = 1 ] || { ls -la "$OUT"; exit 0; }  # EVAL=0: train only (evaluate elsewhere)
mkdir -p "$R/shipped"
cp weights/mim_gan.pt weights/mim_gan.json "$R/shipped/"
for b in bg4 bg8; do cp "$R/$b/model.pt" "$R/shipped/$b.pt"; done
cp "$R/bg4/model.pt" "$R/long128/bg4.pt"
evaluate shipped_bg4 "$R/shipped/mim_gan.pt" --reference "$R/shipped/bg4.pt" &
evaluate shipped_bg8 "$R/shipped/mim_gan.pt" --reference "$R/shipped/bg8.pt" &
evaluate long128_bg4 "$R/long128/model.pt" --reference "$R/long128/bg4.pt" &
evaluate wide224 "$R/wide224/model.pt" &
wait
ls -la "$OUT"
