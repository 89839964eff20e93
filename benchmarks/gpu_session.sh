#!/usr/bin/env bash
# Every GPU check of docs/performance.md in one command, for a machine lent for a few minutes:
#   tests      the Triton kernels and the CUDA-graph replay against eager code on CUDA
#   recurrence benchmarks/recurrence.py --device cuda (reference, fused aten, Triton, Triton + CUDA
#              graph, cuDNN nn.LSTM; batched vs batch-1 inference over the treebank sample)
#   lm         benchmarks/lm_throughput.py --device cuda (whole LM step: ON-LSTM, with and without
#              cuda_graphs, vs LSTM)
#   train      the paper's PTB model (experiment=ptb_paper trainer=gpu) for TRAIN_TIME of wall-clock
#              time, then validation and test perplexity of its best checkpoint
#   train_graphs  the same with model.cuda_graphs=true
# Usage: OUT=results_dir [STEPS="tests recurrence lm train train_graphs"] [TRAIN_TIME=00:00:02:30] \
#            bash benchmarks/gpu_session.sh
# Needs ONLSTM_DATA_DIR (ptb/ and treebank/) and the project's Python packages importable.
# Writes at most eight files into OUT (logs and tables), so that a lent machine can hand them back.
set -u -o pipefail
OUT=${OUT:-benchmarks/results/gpu}
STEPS=${STEPS:-tests recurrence lm train train_graphs}
TRAIN_TIME=${TRAIN_TIME:-00:00:02:30}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 WANDB_MODE=offline
start=$(date +%s)
stamp() { echo "[$(( $(date +%s) - start )) s] $*" | tee -a "$OUT/session.log"; }
wants() { [[ " $STEPS " == *" $1 "* ]]; }

train() {  # $1: name of the run, then extra overrides
    local name=$1 run_dir
    shift
    run_dir=$(mktemp -d)
    stamp "$name: ptb_paper for $TRAIN_TIME $*"
    timeout 420 python train.py experiment=ptb_paper trainer=gpu +trainer.max_time="$TRAIN_TIME" trainer.min_epochs=0 \
        logger=csv trainer.enable_progress_bar=false hydra.run.dir="$run_dir" "$@" > "$OUT/$name.log" 2>&1
    stamp "$name exit $?"
    cp "$run_dir/csv/metrics.csv" "$OUT/${name}_metrics.csv" 2>/dev/null
}

stamp "machine"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
} >> "$OUT/session.log" 2>&1

if wants tests; then
    # the GPU suite of docs/testing.md (a test of the install checks that the two lists agree)
    timeout 300 python -m pytest -q -rA -p no:cacheprovider tests/test_ops_triton.py tests/test_cuda_graphs.py \
        tests/test_pretrained.py tests/test_inference.py tests/test_classifier.py \
        > "$OUT/tests_cuda.txt" 2>&1
    stamp "tests exit $?"
fi
if wants recurrence; then
    timeout 300 python benchmarks/recurrence.py --device cuda > "$OUT/recurrence_cuda.md" 2>&1
    stamp "recurrence exit $?"
fi
if wants lm; then
    timeout 200 python benchmarks/lm_throughput.py --device cuda --out "$OUT/lm_throughput_cuda.md" > /dev/null 2>&1
    stamp "lm_throughput exit $?"
fi
wants train && train ptb_paper_gpu
wants train_graphs && train ptb_paper_gpu_graphs model.cuda_graphs=true
stamp "done"
