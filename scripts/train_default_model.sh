#!/usr/bin/env bash
# Train the small SPIC model shipped in src/spic_diffusers/assets/spic-synthetic-tiny/.
#
#   bash scripts/train_default_model.sh [WORK_DIR] [STEPS] [ASSET_DIR] [--overwrite]
#
# The packaged model goes to ASSET_DIR (default WORK_DIR/spic-synthetic-tiny); an existing ASSET_DIR, such as
# the shipped folder, is replaced only with --overwrite, checked before any work:
#   bash scripts/train_default_model.sh spic-default-training 7000 src/spic_diffusers/assets/spic-synthetic-tiny --overwrite
# (PYTHON=.venv/bin/python picks the interpreter; SKIP_TRAINING=1 only re-checks and repackages WORK_DIR/run.)
#
# 1. 1500 synthetic street scenes (64x128, seed 0) with coarse images made by the codec
#    (16x32 area downsample + raw HEVC at QP 35), saved with `save_to_disk`;
# 2. training/train_spic.py on one CPU thread: 32x64 random crops (on the coarse grid), 90 % of the timesteps
#    below 250 (the paper's sampler only visits t <= 192), bf16 autocast, EMA weights saved as a SPICPipeline;
# 3. the held-out check (8 synthetic test-stream scenes, the paper's sampler) and the shipped folder:
#    fp16 safetensors (loaded as float32) + the model card, written to ASSET_DIR.
set -euo pipefail
OVERWRITE=0
positional=()
for arg in "$@"; do
  case "$arg" in
    --overwrite) OVERWRITE=1 ;;
    -*) echo "train_default_model.sh: unknown option $arg (usage: [WORK_DIR] [STEPS] [ASSET_DIR] [--overwrite])" >&2; exit 2 ;;
    *) positional+=("$arg") ;;
  esac
done
set -- ${positional[@]+"${positional[@]}"}
WORK_DIR=${1:-spic-default-training}
STEPS=${2:-7000}
ASSET_DIR=${3:-$WORK_DIR/spic-synthetic-tiny}
if [ -e "$ASSET_DIR" ] && [ -n "$(ls -A "$ASSET_DIR" 2>/dev/null || echo file)" ] && [ "$OVERWRITE" != 1 ]; then
  echo "train_default_model.sh: $ASSET_DIR already exists; pass --overwrite to replace it" >&2
  exit 1
fi
PY=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$WORK_DIR"

if [ ! -f "$WORK_DIR/data/dataset_dict.json" ]; then
  "$PY" - "$WORK_DIR/data" <<'EOF'
import sys

from spic_diffusers.data import make_synthetic_dataset

dataset = make_synthetic_dataset(
    {"train": 1500, "validation": 8}, height=64, width=128, seed=0, coarse="hevc:35", coarse_downsample=4
)
dataset.save_to_disk(sys.argv[1])
print(dataset)
EOF
fi

cat > "$WORK_DIR/unet_config.json" <<'EOF'
{
  "sample_size": [64, 128],
  "block_out_channels": [32, 64, 96],
  "layers_per_block": 1,
  "attention_downsample_factors": [4],
  "attention_head_dim": 32,
  "downsample_type": "conv",
  "upsample_type": "conv",
  "spade_hidden_channels": 32,
  "num_semantic_channels": 19
}
EOF

if [ "${SKIP_TRAINING:-0}" != 1 ]; then
  "$PY" training/train_spic.py --cpu --dataset_name_or_path "$WORK_DIR/data" \
    --model_config "$WORK_DIR/unet_config.json" --resolution 64,128 --random_crop 32,64 \
    --train_batch_size 8 --learning_rate 4e-4 --lr_scheduler constant_with_warmup --lr_warmup_steps 30 \
    --max_grad_norm 1.0 --ema_decay 0.995 --timestep_bias_max 250 --timestep_bias_fraction 0.9 \
    --cfg_drop_rate 0.2 --mixed_precision bf16 --max_train_steps "$STEPS" --checkpointing_steps 1000 \
    --checkpoints_total_limit 1 --validation_steps 0 --report_to none --output_dir "$WORK_DIR/run"
fi

"$PY" - "$WORK_DIR" "$ASSET_DIR" <<'EOF'
import json
import os
import sys

import torch

from spic_diffusers import SPICPipeline
from spic_diffusers.demo import evaluate_held_out
from spic_diffusers.hub import save_for_hub

work_dir, asset_dir = sys.argv[1], sys.argv[2]
run = os.path.join(work_dir, "run")
summary = json.load(open(os.path.join(run, "train_summary.json")))
args = json.load(open(os.path.join(run, "spic_training_args.json")))
pipe = SPICPipeline.from_pretrained(run)
pipe.set_progress_bar_config(disable=True)
pipe.unet.half().float()  # evaluate exactly the weights that ship (stored as fp16)
held_out = evaluate_held_out(pipe, 8)
json.dump(held_out, open(os.path.join(work_dir, "held_out.json"), "w"), indent=2)
print(json.dumps({k: v for k, v in held_out.items() if k != "per_scene"}, indent=2))
metrics = dict(held_out["spic"])
metrics.update({f"{k}_coarse": v for k, v in held_out["coarse"].items()})
metrics["bpp"] = held_out["bpp"]
eval_results = {
    "dataset": {"name": "synthetic street scenes (8 held-out scenes, 64x128)", "type": "synthetic", "split": "test"},
    "metrics": metrics,
    "settings": {"sampler": "DDPM", "spacing": 100, "t_max": 200, "guidance": 1.5, "coarse": "hevc QP 35"},
}
minutes = summary["global_step"] / summary["steps_per_second"] / 60
training = {
    "Data": "1500 synthetic street scenes (`make_synthetic_dataset`, 64x128, seed 0, train stream), 19 classes",
    "Coarse images": "area downsampling by 4 (16x32) + raw HEVC (x265) at QP 35, made once with the codec",
    "Objective": "hybrid loss (noise MSE + variational bound on the learned variance), linear betas, 1000 steps",
    "Timesteps": f"{args['timestep_bias_fraction']:.0%} drawn from t < {args['timestep_bias_max']}, the rest from 0..999",
    "Samples": f"random {args['random_crop'][0]}x{args['random_crop'][1]} crops (on the coarse grid), flips",
    "Guidance drop": f"{args['cfg_drop_rate']:.0%} of samples with an all-zero map",
    "Optimiser": f"AdamW, lr {args['learning_rate']:g} ({args['lr_warmup_steps']} warm-up steps), "
                 f"batch {args['train_batch_size']}, gradient clipping {args['max_grad_norm']}, bf16 autocast",
    "Steps": f"{summary['global_step']} (about {minutes:.0f} minutes on one CPU thread)",
    "EMA": f"decay {args['ema_decay']} (the EMA weights ship)",
    "Final training loss": f"{summary['last']['loss']:.4f}",
    "Command": "`bash scripts/train_default_model.sh` (training/train_spic.py) in the spic-diffusers repository",
}
pipe.unet.half()
save_for_hub(
    pipe,
    asset_dir,
    overwrite=True,
    model_id="src/spic_diffusers/assets/spic-synthetic-tiny",
    title="spic-synthetic-tiny",
    summary=(
        "A small SPIC receiver trained on the project's synthetic street scenes. It ships inside the "
        "`spic-diffusers` package for the offline demo (`spic demo`, `make demo`) and for tests; load it with "
        "`SPICPipeline.from_pretrained(spic_diffusers.demo.shipped_model_path())`. It is a demonstration "
        "model: it has never seen a real photograph."
    ),
    source="trained from scratch by spic-diffusers on synthetic scenes with training/train_spic.py",
    eval_results=eval_results,
    training=training,
    limitations=(
        "- Trained only on synthetic 64x128 street scenes with one coarse-image setting (HEVC QP 35): on real "
        "photographs it restores little beyond the coarse image.\n"
        "- A short CPU training run: textures are rough."
    ),
)
print(f"wrote {asset_dir}")
EOF
