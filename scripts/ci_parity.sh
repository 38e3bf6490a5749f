#!/usr/bin/env bash
# Convert SRC, then verify it against SRC through vLLM on this host's device, for a CI job on a GPU or Ascend runner.
#
#   scripts/ci_parity.sh SRC [OUT]
#
# Leaves OUT (default converted/<name>-seq-cls) and, in ARTIFACTS (default OUT-parity): report.json, junit.xml,
# parity.png (when matplotlib is installed) and the vLLM logs. Exit code: 0 parity holds, 1 it does not, 2 bad input.
# Environment: DEVICE cpu|cuda|npu (default cpu), DTYPE float32|bfloat16|float16 (default float32),
#              BACKEND vllm|server|transformers (default vllm), SEQCLS (default: seqcls on PATH), EXTRA_ARGS (verify),
#              CONVERT_ARGS (convert, e.g. "--preset mxbai-rerank-v2").
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 || "$1" == -h || "$1" == --help ]]; then
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    [[ $# -ge 1 && ( "$1" == -h || "$1" == --help ) ]] && exit 0 || exit 2
fi
src=$1
out=${2:-converted/$(basename "${src%/}")-seq-cls}
artifacts=${ARTIFACTS:-${out%/}-parity}
seqcls=${SEQCLS:-seqcls}

# shellcheck disable=SC2086  # CONVERT_ARGS is a list of flags on purpose
$seqcls convert "$src" -o "$out" --overwrite ${CONVERT_ARGS:-}
# shellcheck disable=SC2086  # EXTRA_ARGS is a list of flags on purpose
$seqcls verify "$out" --original "$src" --backend "${BACKEND:-vllm}" --device "${DEVICE:-cpu}" \
    --dtype "${DTYPE:-float32}" --report "$artifacts/report.json" --junit "$artifacts/junit.xml" \
    --plot "$artifacts/parity.png" --log-dir "$artifacts/logs" ${EXTRA_ARGS:-}
