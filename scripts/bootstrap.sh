# shellcheck shell=sh
# Sourced by ./mugaika and ./run-tests: create .venv from the lock files on first use, and
# refresh it when a lock file changes. Needs only python3 (>= 3.11); installs Debian's
# python3-venv if `python3 -m venv` is unavailable and we are root.
set -eu

MUGAIKA_ROOT=${MUGAIKA_ROOT:-$(cd "$(dirname "$0")" && pwd)}
VENV="${MUGAIKA_VENV:-$MUGAIKA_ROOT/.venv}"

_python() {
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "mugaika: Python >= 3.11 is required (found none on PATH)" >&2
    return 1
}

_make_venv() {
    py=$(_python)
    if ! "$py" -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "mugaika: installing python3-venv" >&2
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            "$py" -m venv "$VENV"
        else
            echo "mugaika: '$py -m venv' failed; install python3-venv" >&2
            return 1
        fi
    fi
}

# ensure_venv LOCKFILE: the venv holds exactly what LOCKFILE pins, plus this checkout (editable).
ensure_venv() {
    lock="$MUGAIKA_ROOT/$1"
    stamp="$VENV/.mugaika-$(basename "$lock").sha256"
    want=$(cat "$lock" "$MUGAIKA_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        return 0
    fi
    [ -x "$VENV/bin/python" ] || _make_venv
    echo "mugaika: installing dependencies from $(basename "$lock") into $VENV" >&2
    # pip's own notes (e.g. about local mirrors) go to a log, shown only if pip fails.
    if ! { "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes -r "$lock" &&
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
            --no-build-isolation -e "$MUGAIKA_ROOT"; } 2>"$VENV/pip.log"; then
        cat "$VENV/pip.log" >&2
        echo "mugaika: installing dependencies failed (log above)" >&2
        return 1
    fi
    echo "$want" > "$stamp"
}
