#!/usr/bin/env bash
# Installs torch into .venv when no suitable torch is importable there (`make torch`; `make setup`
# runs it after `uv sync --inexact`, which leaves packages that are not in the lock alone).
#
# torch is deliberately NOT in uv.lock: the registry's Linux wheels of torch pull several GB of
# CUDA libraries, which a CPU-only machine must not download, and a lock resolved against a
# local wheel folder would record that folder's path for everyone. Order of preference:
#   1. a torch already importable in .venv (>= TORCH_MIN): nothing to do;
#   2. a torch wheel for this Python in a local wheel folder named by UV_FIND_LINKS or
#      PIP_FIND_LINKS (e.g. a CPU build a machine image ships): install it;
#   3. `uv pip install --torch-backend=auto torch`: uv picks the CPU build on a machine without
#      an NVIDIA driver and the matching CUDA build on one with it.
# Set TORCH_BACKEND (cpu, cu126, cu128, ...) to force a build, e.g. TORCH_BACKEND=cu128 for the
# GPU build; it skips the local wheel folder.
set -euo pipefail

UV=${UV:-uv}
PYTHON=${PYTHON:-.venv/bin/python}
TORCH_MIN=${TORCH_MIN:-2.4}
TORCH_SPEC=${TORCH_SPEC:-"torch>=2.4,<3"}

if [[ ! -x "$PYTHON" ]]; then
    echo "install_torch: $PYTHON not found; run 'uv sync' first" >&2
    exit 1
fi

have_torch() {
    "$PYTHON" - "$TORCH_MIN" <<'PY' 2>/dev/null
import sys
import torch
want = tuple(int(x) for x in sys.argv[1].split("."))
have = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:len(want)])
print(f"torch {torch.__version__} (cuda: {torch.version.cuda or 'none'}) is installed")
sys.exit(0 if have >= want else 1)
PY
}

if [[ -z "${TORCH_BACKEND:-}" ]] && have_torch; then
    exit 0
fi

if [[ -z "${TORCH_BACKEND:-}" ]]; then
    pytag=$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    arch=$(uname -m)
    # Both variables may hold several entries (space or comma separated); only local folders
    # (plain paths or file:// URLs) are searched here.
    links="${UV_FIND_LINKS:-} ${PIP_FIND_LINKS:-}"
    for entry in ${links//,/ }; do
        folder=${entry#file://}
        [[ -d "$folder" ]] || continue
        wheel=$(ls -1 "$folder"/torch-*-"$pytag"-"$pytag"-*"$arch".whl 2>/dev/null | sort -V | tail -n 1 || true)
        if [[ -n "$wheel" ]]; then
            echo "install_torch: installing $wheel"
            "$UV" pip install --python "$PYTHON" "$wheel"
            have_torch
            exit 0
        fi
    done
fi

echo "install_torch: installing $TORCH_SPEC (torch backend: ${TORCH_BACKEND:-auto})"
"$UV" pip install --python "$PYTHON" --torch-backend="${TORCH_BACKEND:-auto}" "$TORCH_SPEC"
have_torch
