# Installs the Python packages of the benchmark harness into .tools/bench-venv, once, and
# prints the path of that venv's python. scripts/bench runs scripts/bench_kinesis.py with it,
# which needs zstandard to decode packed Kinesis records, and so does scripts/demo. Run from
# the repository root. A lock file makes a second script started at the same time wait, and
# a venv whose zstandard does not import is replaced whole.
install_bench_venv() {
    local venv=".tools/bench-venv"
    local version="0.25.0"
    # `|| return` throughout, because set -e does not reach into the $(...) that callers
    # run this in.
    mkdir -p .tools || return
    (
        flock 9 || exit 1
        if ! zstandard_imports "$venv" "$version"; then
            rm -rf "$venv"
            python3 -m venv "$venv" >&2 || exit 1
            "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
                "zstandard==$version" >&2 || exit 1
            if ! zstandard_imports "$venv" "$version"; then
                echo "install_bench_venv: zstandard $version does not import after installing it into $venv" >&2
                exit 1
            fi
        fi
    ) 9>.tools/bench-venv.lock || return
    echo "$PWD/$venv/bin/python"
}

# Returns 0 when the venv $1 imports zstandard version $2.
zstandard_imports() {
    "$1/bin/python" -c "import sys, zstandard; sys.exit(zstandard.__version__ != '$2')" 2>/dev/null
}
