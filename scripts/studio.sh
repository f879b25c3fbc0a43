#!/usr/bin/env bash
# One entry point for a fresh machine (README "Quick start"):
#   bash scripts/studio.sh serve [ARGS]   install everything, then launch the app on the offline defaults
#   bash scripts/studio.sh test  [ARGS]   install everything (plus test tools), then run the test suite
#   bash scripts/studio.sh install        install only
# Idempotent: Debian packages are installed only when missing, and the virtual environment is
# rebuilt only when pyproject.toml or this script changes (a stamp holds their hash).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

cmd=${1:-serve}
[ $# -gt 0 ] && shift

# The venv lives outside the checkout so that a fresh clone (as CI makes) reuses it; override
# with SPEECH_STUDIO_VENV.
venv=${SPEECH_STUDIO_VENV:-${XDG_DATA_HOME:-$HOME/.local/share}/speech-studio/venv}

# Exact pins for the torch family, installed before anything else (README "Why torch 2.14.1"):
# coqui-tts imports torchaudio and torchcodec, whose PyPI wheels only load next to this build.
TORCH_PINS=(torch==2.14.1 torchaudio==2.11.0 torchcodec==0.17.0)

say() { printf '[studio] %s\n' "$*" >&2; }
die() { printf '[studio] error: %s\n' "$*" >&2; exit 1; }

find_python() {
    for p in "${PYTHON:-}" python3.11 python3; do
        [ -n "$p" ] || continue
        if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            echo "$p"; return 0
        fi
    done
    die "Python 3.11 is required (set PYTHON=/path/to/python3.11)."
}

apt_install() {
    # Install the Debian packages that are missing; say clearly what to do when we cannot.
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 || die "missing system packages: ${missing[*]} (no apt-get here: install them with your package manager)."
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "missing system packages: ${missing[*]}; run as root or install them: apt-get install ${missing[*]}"
        sudo=(sudo)
    fi
    say "installing Debian packages: ${missing[*]}"
    "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}

install_python() {
    # One environment for serving and testing (the test tools are small), so switching between the
    # two commands never reinstalls.
    local py stamp want
    py=$(find_python)
    stamp="$venv/.studio-stamp"
    want=$(cat pyproject.toml scripts/studio.sh | sha256sum | cut -c1-16)
    if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && grep -qx -- "$want" "$stamp"; then
        # Same dependencies as last time: only (re)link this checkout, without touching the network.
        "$venv/bin/pip" install -q --no-deps --no-build-isolation -e . >/dev/null
        return 0
    fi
    say "creating/updating the virtual environment in $venv (first run takes a few minutes)"
    [ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/pip" install -q "${TORCH_PINS[@]}"
    "$venv/bin/pip" install -q -e ".[test,cluster]" "${TORCH_PINS[@]}"
    echo "$want" > "$stamp"
}

export GRADIO_ANALYTICS_ENABLED=False ORT_DISABLE_TELEMETRY=1 HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} \
    TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1} PYTHONUNBUFFERED=1

case "$cmd" in
    install)
        apt_install espeak-ng ffmpeg
        install_python
        ;;
    serve)
        apt_install espeak-ng ffmpeg
        install_python
        say "starting Speech Studio (Ctrl+C to stop)"
        exec "$venv/bin/python" -m webapp serve "$@"
        ;;
    test)
        apt_install espeak-ng ffmpeg chromium chromium-driver fonts-dejavu-core redis-server haproxy
        install_python
        export CHROMIUM_PATH=${CHROMIUM_PATH:-/usr/bin/chromium}
        exec "$venv/bin/python" -m pytest "$@"
        ;;
    python)
        exec "$venv/bin/python" "$@"
        ;;
    *)
        die "unknown command '$cmd' (use: serve, test, install, python)"
        ;;
esac
