#!/usr/bin/env bash
# The first thing to run: installs the device side of fer-edge into .venv (no root, no
# TensorFlow), fetches BlazeFace, and runs `fer-edge demo`: faces read, a visit, the summary.
# Needs Python >= 3.9 with venv, and the package registry. A second run only checks.
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
    echo "demo.sh: needs Python 3.9 or later as $python (or set PYTHON=/path/to/python3)" >&2
    exit 1
fi
make_venv() {   # a .venv that was there before is never removed, only completed
    local fresh=$1
    if ! "$python" -m venv .venv >/dev/null; then
        if [ "$fresh" = yes ]; then rm -rf .venv; fi
        echo "demo.sh: $python cannot make a venv; on Debian or Ubuntu: sudo apt install python3-venv" >&2
        exit 1
    fi
}
if [ ! -x .venv/bin/python ]; then
    echo "making .venv ..."
    make_venv yes
fi
# Installed when missing, and again when the code changed since (an editable install follows it by itself).
installed=$(.venv/bin/python -c 'import fer_edge; print(fer_edge.__file__)' 2>/dev/null || true)
if [ -z "$installed" ] || [ ! -x .venv/bin/fer-edge ] || { [[ "$installed" == */site-packages/* ]] \
        && [ -n "$(find edge models pyproject.toml -newer .venv/bin/fer-edge -print -quit 2>/dev/null)" ]; }; then
    echo "installing fer-edge into .venv (the device side: OpenCV, LiteRT, no TensorFlow) ..."
    # A venv cut off while it was made has a python but no pip: made again over itself, it has one.
    .venv/bin/python -m pip --version >/dev/null 2>&1 || make_venv no
    if ! .venv/bin/python -m pip install -q --disable-pip-version-check . >.venv/pip-install.log 2>&1; then
        reason=$(grep -E '^ *ERROR:' .venv/pip-install.log | tail -1 | sed 's/^ *//')
        echo "demo.sh: cannot install fer-edge into .venv (the package registry is needed once): ${reason:-see .venv/pip-install.log} (all of pip's output: .venv/pip-install.log)" >&2
        exit 1
    fi
fi
if ! .venv/bin/fer-edge detector list | grep -q "^blazeface .*usable"; then
    .venv/bin/fer-edge detector fetch
fi
.venv/bin/fer-edge demo "$@"
