#!/usr/bin/env bash
# Serve a seqcls-converted checkpoint on vllm-ascend: no overrides, its score template where vLLM renders it exactly.
#   scripts/ascend/serve_converted.sh MODEL [--vllm-version X.Y] [--port N] [--host H] [--dtype D] [--print] [-- ARGS]
# shellcheck source=scripts/ascend/serve_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/serve_common.sh"
build_serve_command converted "$@"
exec "${CMD[@]}"
