# Installers for the Lambda's build and check tools, each once into its own venv under
# .tools/ (ignored by git). Each function prints the path of the tool it installed.

# cargo-lambda from PyPI, with the zig toolchain (PyPI ziglang) it cross-links with, so the
# binary links against an older glibc than the build machine has.
install_cargo_lambda() {
    local venv=".tools/venv-lambda"
    local version="1.9.2"
    local zig="0.17.1"
    if ! "$venv/bin/python" -c "
import importlib.metadata as m, sys
sys.exit(m.version('cargo-lambda') != '$version' or m.version('ziglang') != '$zig')" 2>/dev/null; then
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            "cargo-lambda==$version" "ziglang==$zig" >&2
    fi
    echo "$PWD/$venv/bin/cargo-lambda"
}

# cfn-lint from PyPI, for the Lambda's CloudFormation template.
install_cfn_lint() {
    local venv=".tools/venv-cfn"
    local version="1.58.0"
    if ! "$venv/bin/python" -c "
import importlib.metadata as m, sys
sys.exit(m.version('cfn-lint') != '$version')" 2>/dev/null; then
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check "cfn-lint==$version" >&2
    fi
    echo "$PWD/$venv/bin/cfn-lint"
}
