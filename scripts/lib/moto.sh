# Installs moto's server mode (PyPI moto[server]) into .tools/venv, once, and prints the
# path of its moto_server binary. Used by scripts/test for the AWS secret tests, which
# start moto_server on 127.0.0.1 themselves.
install_moto() {
    local venv=".tools/venv"
    local version="5.2.5"
    if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$version')" 2>/dev/null; then
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$version" >&2
    fi
    echo "$PWD/$venv/bin/moto_server"
}
