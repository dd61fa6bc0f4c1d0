# Sourced by scripts/kit and scripts/test: installs what the kit needs on a fresh
# Debian machine with Python 3.11 and pip, and nothing that is already there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

_say() { printf 'popup-kit setup: %s\n' "$*" >&2; }

_apt_install() {
    # Debian packages by name, only those not installed yet.
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    _say "installing ${missing[*]} (apt-get)"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

_ensure_uv() {
    if ! command -v uv >/dev/null 2>&1; then
        _say "installing uv (pip)"
        python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
        export PATH="$HOME/.local/bin:$PATH"
    fi
}

_ensure_uv
_apt_install libzbar0
