# Installs kinesalite, an in-memory Kinesis Data Streams emulator (npm package), into
# .tools/kinesalite once, and prints the absolute path of scripts/lib/kinesalite.js, the
# wrapper that starts it on 127.0.0.1. Used by scripts/test for the Kinesis tests, which
# pass that path in EDGEALERT_KINESALITE_JS. Needs node and npm. Call it from the
# repository root, as scripts/test does.
#
# kinesalite lists leveldown, a native LevelDB binding, as an optional dependency for
# on-disk storage. The tests keep streams in memory (memdown), so the install omits
# optional dependencies and runs no install scripts: nothing is compiled.
install_kinesalite() {
    local prefix=".tools/kinesalite"
    local version="3.3.3"
    local installed="$prefix/node_modules/kinesalite/package.json"
    if [ ! -f "$installed" ] || [ "$(node -p "require('./$installed').version" 2>/dev/null)" != "$version" ]; then
        # `|| return`, because set -e does not reach into the $(...) that callers run this in.
        mkdir -p "$prefix" || return
        npm install --prefix "$prefix" --omit=optional --ignore-scripts --no-audit --no-fund \
            --loglevel=error "kinesalite@$version" >&2 || return
    fi
    echo "$PWD/scripts/lib/kinesalite.js"
}
