#!/usr/bin/env bash
# Start the vllm-ascend container the way vllm-ascend's Qwen3-Reranker tutorial does, with these scripts inside.
#
#   scripts/ascend/docker_run.sh [--image-tag TAG] [--npu N[,N...]] [--cache DIR] [--name NAME] [--print] [-- CMD...]
#
# TAG defaults to v0.23.0 (add -a3 or use a -310p tag for those machines); NPU indices default to 0 and map to
# /dev/davinciN; DIR (default /root/.cache) is mounted at /root/.cache for model weights. This folder is mounted
# read-only at /seqcls-ascend, so /seqcls-ascend/serve_converted.sh works inside. CMD defaults to bash.
# VLLM_USE_MODELSCOPE is passed through when set (the seed loads models from ModelScope).
set -euo pipefail

fail() {
    echo "docker_run.sh: error: $*" >&2
    exit 2
}

tag=v0.23.0 npus=0 cache=/root/.cache name=vllm-ascend print=0 cmd=(bash)
while [[ $# -gt 0 ]]; do
    case $1 in
        -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --image-tag) [[ $# -ge 2 && -n $2 ]] || fail "--image-tag needs a value"; tag=$2; shift 2 ;;
        --npu) [[ $# -ge 2 && $2 =~ ^[0-9]+(,[0-9]+)*$ ]] || fail "--npu takes indices such as 0 or 0,1"; npus=$2; shift 2 ;;
        --cache) [[ $# -ge 2 && -n $2 ]] || fail "--cache needs a folder"; cache=$2; shift 2 ;;
        --name) [[ $# -ge 2 && -n $2 ]] || fail "--name needs a value"; name=$2; shift 2 ;;
        --print) print=1; shift ;;
        --) shift; [[ $# -gt 0 ]] && cmd=("$@"); break ;;
        *) fail "unknown argument $1 (see --help)" ;;
    esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
args=(docker run --rm --name "$name" --shm-size=1g --net=host)
IFS=, read -r -a indices <<<"$npus"
for i in "${indices[@]}"; do
    args+=(--device "/dev/davinci$i")
done
args+=(--device /dev/davinci_manager --device /dev/devmm_svm --device /dev/hisi_hdc)
for mount in /usr/local/dcmi /usr/local/Ascend/driver/tools/hccn_tool /usr/local/bin/npu-smi \
    /usr/local/Ascend/driver/lib64/ /usr/local/Ascend/driver/version.info /etc/ascend_install.info; do
    args+=(-v "$mount:$mount")
done
args+=(-v "$cache:/root/.cache" -v "$here:/seqcls-ascend:ro" -e PYTORCH_NPU_ALLOC_CONF=expandable_segments:True)
[[ -n ${VLLM_USE_MODELSCOPE:-} ]] && args+=(-e "VLLM_USE_MODELSCOPE=$VLLM_USE_MODELSCOPE")
args+=(-it "quay.io/ascend/vllm-ascend:$tag" "${cmd[@]}")

if [[ $print == 1 ]]; then
    printf '%q ' "${args[@]}"
    printf '\n'
    exit 0
fi
exec "${args[@]}"
