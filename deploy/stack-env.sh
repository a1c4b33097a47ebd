# Sourced before supervisord: one slot (a T3 + S3Gen pair) per visible GPU, or one CPU slot.
# Every value can be preset in the environment; these are only defaults.
if [ -z "${CHATTERBOX_SLOTS:-}" ]; then
    gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
    if [ "${gpus:-0}" -gt 0 ]; then
        export CHATTERBOX_SLOTS=$gpus CHATTERBOX_DEVICE=cuda:0 CHATTERBOX_SLOT_PREFIX=gpu
    else
        export CHATTERBOX_SLOTS=1 CHATTERBOX_DEVICE=cpu CHATTERBOX_SLOT_PREFIX=cpu
    fi
fi
export CHATTERBOX_DEVICE=${CHATTERBOX_DEVICE:-cpu}
export CHATTERBOX_SLOT_PREFIX=${CHATTERBOX_SLOT_PREFIX:-gpu}
# On a CPU the slot's two processes share the cores: half each, so neither starves the other.
if [ "$CHATTERBOX_DEVICE" = cpu ] && [ -z "${CHATTERBOX_THREADS:-}" ]; then
    export CHATTERBOX_THREADS=$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))
fi
export CHATTERBOX_THREADS=${CHATTERBOX_THREADS:-0}
export HF_HUB_DISABLE_PROGRESS_BARS=${HF_HUB_DISABLE_PROGRESS_BARS:-1}
# supervisord.conf puts every path under its own directory (`%(here)s`), so `supervisorctl -c
# supervisord.conf` works from the repo root with nothing exported; its log directory must exist.
mkdir -p logs
# Streams per slot at once (batched T3, batched S3Gen): the aim on a GPU is 32, each faster than real time.
if [ -z "${CHATTERBOX_WORKER_CAPACITY:-}" ]; then
    if [ "$CHATTERBOX_DEVICE" = cpu ]; then export CHATTERBOX_WORKER_CAPACITY=8; else export CHATTERBOX_WORKER_CAPACITY=32; fi
fi
