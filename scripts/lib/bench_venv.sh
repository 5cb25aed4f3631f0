# Installs the Python packages of the benchmark harness into .tools/bench-venv, once, and
# prints the path of that venv's python. scripts/bench runs scripts/bench_kinesis.py with it,
# which needs zstandard to decode packed Kinesis records. Run from the repository root.
install_bench_venv() {
    local venv=".tools/bench-venv"
    local version="0.25.0"
    if ! "$venv/bin/python" -c "import zstandard, sys; sys.exit(zstandard.__version__ != '$version')" 2>/dev/null; then
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check "zstandard==$version" >&2
    fi
    echo "$PWD/$venv/bin/python"
}
