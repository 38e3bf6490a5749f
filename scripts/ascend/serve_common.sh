# shellcheck shell=bash
# Shared by serve_original.sh and serve_converted.sh: builds the `vllm serve` command for the vLLM / vllm-ascend
# generation in use. It runs inside the vllm-ascend image, where seqcls is not installed, so the rules of
# converter/vllm_compat.py are repeated here; tests/test_ascend_scripts.py checks that both print the same command.
#
#   serve_original.sh  MODEL [--vllm-version X.Y] [--port N] [--host H] [--dtype D] [--print] [-- VLLM_ARGS...]
#   serve_converted.sh MODEL [same options]
#
# The version comes from --vllm-version, else from the installed vllm-ascend (or vllm) package.
set -euo pipefail

usage() {
    sed -n '5,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

fail() {
    echo "$(basename "$0"): error: $*" >&2
    exit 2
}

version_ge() { # version_ge A B: A >= B, comparing numeric releases only (0.9.2rc1 counts as 0.9.2)
    local a b
    a=$(sed -E 's/^([0-9]+(\.[0-9]+)*).*/\1/' <<<"$1")
    b=$(sed -E 's/^([0-9]+(\.[0-9]+)*).*/\1/' <<<"$2")
    [[ "$(printf '%s\n%s\n' "$b" "$a" | sort -V | head -n1)" == "$b" ]]
}

build_serve_command() { # build_serve_command original|converted "$@"
    local mode=$1
    shift
    local model="" version="" port=8000 host="" dtype="" print=0 extra=()
    while [[ $# -gt 0 ]]; do
        case $1 in
            -h | --help) usage; exit 0 ;;
            --vllm-version) [[ $# -ge 2 ]] || fail "--vllm-version needs a value"; version=$2; shift 2 ;;
            --port) [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || fail "--port needs a number"; port=$2; shift 2 ;;
            --host) [[ $# -ge 2 ]] || fail "--host needs a value"; host=$2; shift 2 ;;
            --dtype)
                [[ $# -ge 2 && $2 =~ ^(float32|bfloat16|float16)$ ]] || fail "--dtype must be float32, bfloat16 or float16"
                dtype=$2; shift 2 ;;
            --print) print=1; shift ;;
            --) shift; extra=("$@"); break ;;
            -*) fail "unknown option $1 (see --help)" ;;
            *) [[ -z $model ]] || fail "one MODEL only (got $model and $1)"; model=$1; shift ;;
        esac
    done
    [[ -n $model ]] || { usage >&2; exit 2; }
    if [[ -z $version ]]; then
        version=$(python3 -c 'import importlib.metadata as m
for d in ("vllm-ascend", "vllm"):
    try:
        print(m.version(d)); break
    except m.PackageNotFoundError:
        pass' 2>/dev/null) || true
        [[ -n $version ]] || fail "no vllm-ascend here; pass --vllm-version X.Y"
    fi
    [[ $version =~ ^[0-9]+\.[0-9]+ ]] || fail "--vllm-version $version is not a version number such as 0.9.2"
    version_ge "$version" 0.9.2 || fail "vLLM $version predates Qwen3-Reranker support; use 0.9.2 or newer"
    if [[ -z $dtype ]]; then
        dtype=$(python3 -c 'import json, sys
d = json.load(open(sys.argv[1])).get("dtype") or json.load(open(sys.argv[1])).get("torch_dtype") or "bfloat16"
print(d if d in ("float32", "bfloat16", "float16") else "bfloat16")' "$model/config.json" 2>/dev/null) || dtype=bfloat16
    fi

    # The reference's length (8,192, or the model's own if shorter): a longer pair is refused, not scored whole.
    local length
    length=$(python3 -c 'import json, sys
c = json.load(open(sys.argv[1]))
print(min(c.get("max_position_embeddings") or 8192, 8192))' "$model/config.json" 2>/dev/null) || length=8192

    local runner=(--runner pooling) overrides_flag=--hf-overrides template=0
    if ! version_ge "$version" 0.10.1; then
        runner=(--task score)
        overrides_flag=--hf_overrides
    fi
    version_ge "$version" 0.22.0 && template=1

    CMD=(vllm serve "$model" "${runner[@]}" --dtype "$dtype")
    [[ -n $host ]] && CMD+=(--host "$host")
    CMD+=(--port "$port" --max-model-len "$length")
    if [[ $mode == original ]]; then
        CMD+=("$overrides_flag" '{"architectures":["Qwen3ForSequenceClassification"],"classifier_from_token":["no","yes"],"is_original_qwen3_reranker":true}')
    fi
    version_ge "$version" 0.19.1 || CMD+=(--no-enable-prefix-caching)
    if [[ $mode == converted && $template == 1 ]]; then
        CMD+=(--chat-template "$model/score_template.jinja")
    fi
    CMD+=("${extra[@]}")
    if [[ $mode == original || $template == 0 ]]; then
        echo "note: clients must format queries and documents as the seed does (see client.py)" >&2
    fi
    echo "note: a pair over $length tokens is refused; client.py --max-length cuts its document as the reference does" >&2
    export PYTORCH_NPU_ALLOC_CONF=expandable_segments:True
    if [[ $print == 1 ]]; then
        printf 'PYTORCH_NPU_ALLOC_CONF=%s' "$PYTORCH_NPU_ALLOC_CONF"
        printf ' %q' "${CMD[@]}"
        printf '\n'
        exit 0
    fi
}
