#!/usr/bin/env bash
# Serve the original Qwen3-Reranker on vllm-ascend the seed's way: load-time --hf_overrides, manual formatting.
#   scripts/ascend/serve_original.sh MODEL [--vllm-version X.Y] [--port N] [--host H] [--dtype D] [--print] [-- ARGS]
# shellcheck source=scripts/ascend/serve_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/serve_common.sh"
build_serve_command original "$@"
exec "${CMD[@]}"
