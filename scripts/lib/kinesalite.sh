# Installs kinesalite, an in-memory Kinesis Data Streams emulator (npm package), into
# .tools/kinesalite once, and prints the absolute path of scripts/lib/kinesalite.js, the
# wrapper that starts it on 127.0.0.1. Used by scripts/test for the Kinesis tests, which
# pass that path in EDGEALERT_KINESALITE_JS. Needs node and npm. Call it from the
# repository root, as scripts/test does.
#
# kinesalite lists leveldown, a native LevelDB binding, as an optional dependency for
# on-disk storage. The tests keep streams in memory (memdown), so the install omits
# optional dependencies and runs no install scripts: nothing is compiled.
#
# Scripts started at the same time share one install: a lock file makes the second wait. An
# install that does not load (interrupted, or files deleted since) is replaced whole.
install_kinesalite() {
    local prefix=".tools/kinesalite"
    local version="3.3.3"
    # `|| return` throughout, because set -e does not reach into the $(...) that callers
    # run this in.
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        echo "install_kinesalite: node and npm are needed for kinesalite; install Node.js 20 with npm" >&2
        return 1
    fi
    mkdir -p .tools || return
    (
        flock 9 || exit 1
        if ! kinesalite_loads "$prefix" "$version"; then
            rm -rf "$prefix"
            mkdir -p "$prefix" || exit 1
            npm install --prefix "$prefix" --omit=optional --ignore-scripts --no-audit --no-fund \
                --loglevel=error "kinesalite@$version" >&2 || exit 1
            if ! kinesalite_loads "$prefix" "$version"; then
                echo "install_kinesalite: kinesalite $version does not load after installing it into $prefix" >&2
                exit 1
            fi
        fi
    ) 9>.tools/kinesalite.lock || return
    echo "$PWD/scripts/lib/kinesalite.js"
}

# Returns 0 when kinesalite $2 is installed under $1 and loads with every dependency.
kinesalite_loads() {
    local modules="$PWD/$1/node_modules"
    node -e "
        const version = require('$modules/kinesalite/package.json').version
        if (version !== '$2') process.exit(1)
        require('$modules/kinesalite')
    " 2>/dev/null
}
