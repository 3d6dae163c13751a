#!/usr/bin/env bash
# arm_jax on an accelerator host, in one pass: which devices JAX sees, the numerics tests that
# compare against transformers/torch and full-logit references (decoder, LoRA, GRPO, sampler),
# the README's toy run, and the SmolLM2-135M-shape training step (random weights: the offline
# GGUF package is not needed). Each part has its own time limit and prints its figures; logs
# go to $LOGS (default /tmp/arm_jax_accelerator_check).
#
#   bash experiments/accelerator_check.sh   # from the repository root, arm_jax importable
#
# Not yet run on an accelerator: no session so far was lent one.
#
set -u
LOGS=${LOGS:-/tmp/arm_jax_accelerator_check}
TESTS_S=${TESTS_S:-150}
TOY_S=${TOY_S:-200}
BENCH_S=${BENCH_S:-170}
mkdir -p "$LOGS"

python -c "import jax, flax, optax, orbax.checkpoint as o; print('jax', jax.__version__, '| flax',
flax.__version__, '| optax', optax.__version__, '| devices', jax.devices())" 2>&1 \
  | tee "$LOGS/devices.log"

echo "== tests (limit ${TESTS_S}s)"
SECONDS=0
timeout "$TESTS_S" python -m pytest -q -p no:cacheprovider --durations=5 \
  tests/test_decoder_parity.py tests/test_lora.py tests/test_grpo.py tests/test_sampling.py \
  > "$LOGS/tests.log" 2>&1
echo "tests: exit $? in ${SECONDS}s"
grep -E "passed|failed|error" "$LOGS/tests.log" | tail -3
grep -E "^(FAILED|ERROR)" "$LOGS/tests.log" | head -20

echo "== toy run: python main.py (limit ${TOY_S}s)"
SECONDS=0
rm -rf /tmp/arm_jax_toy
timeout "$TOY_S" python main.py --workdir /tmp/arm_jax_toy > "$LOGS/toy.log" 2>&1
echo "toy: exit $? in ${SECONDS}s"
tail -15 "$LOGS/toy.log"

echo "== SmolLM2-135M-shape training step, 8 x 512 (limit ${BENCH_S}s)"
SECONDS=0
timeout "$BENCH_S" python experiments/bench_train_step.py --random_smollm2 --skip_torch \
  --skip_full_logits --repeats 5 > "$LOGS/bench.log" 2>&1
echo "bench: exit $? in ${SECONDS}s"
grep -E "^(model|grpo_update|forward_backward)|devices|cpu x|gpu x|tpu x|cuda x" "$LOGS/bench.log"
