# Packaging tools and settings shared by scripts/package and scripts/test-packages.
#
# install_package_tools installs, once per pinned version, cargo-deb and cargo-generate-rpm
# with `cargo install --root .tools`, and cargo-zigbuild with the Zig compiler from PyPI
# (packages cargo-zigbuild and ziglang) into the virtual environment .tools/zig. It then puts
# both bin folders first on PATH.

# Oldest glibc the binary may need. RHEL 8 and its rebuilds (Alma, Rocky) ship glibc 2.28,
# the oldest of the supported distributions (Debian 11 has 2.31, Ubuntu 20.04 has 2.31).
GLIBC_FLOOR=2.28

CARGO_DEB_VERSION=3.8.0
CARGO_GENERATE_RPM_VERSION=0.21.1
CARGO_ZIGBUILD_VERSION=0.24.1
ZIGLANG_VERSION=0.17.1

# Installs NAME at VERSION into .tools/bin unless that version is there. Both tools build in
# .tools/build, so the dependencies they share compile once; install_package_tools deletes it
# afterwards.
install_cargo_tool() {
    local name="$1" version="$2"
    if ! .tools/bin/"$name" --version 2>/dev/null | grep -qx "$name $version"; then
        CARGO_TARGET_DIR=.tools/build cargo install --quiet --locked --root .tools "$name@$version" >&2
    fi
}

install_zig_tools() {
    local venv=".tools/zig"
    if ! "$venv/bin/cargo-zigbuild" --version 2>/dev/null | grep -qx "cargo-zigbuild $CARGO_ZIGBUILD_VERSION" ||
        [ "$("$venv/bin/python" -m ziglang version 2>/dev/null)" != "$ZIGLANG_VERSION" ]; then
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION" "ziglang==$ZIGLANG_VERSION" >&2
    fi
}

install_package_tools() {
    install_cargo_tool cargo-deb "$CARGO_DEB_VERSION"
    install_cargo_tool cargo-generate-rpm "$CARGO_GENERATE_RPM_VERSION"
    rm -rf .tools/build
    install_zig_tools
    # cargo-zigbuild runs `python3 -m ziglang` when no `zig` is on PATH, so the venv's python3
    # must come first.
    PATH="$PWD/.tools/zig/bin:$PWD/.tools/bin:$PATH"
    export PATH
}

# Installs Debian packages that provide the listed commands when any is missing, with sudo
# unless this runs as root. Arguments are command:package pairs.
install_debian_commands() {
    local pair missing=()
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    local sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    echo "installing Debian packages: ${missing[*]}" >&2
    "${sudo[@]}" apt-get update -qq >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -qq -y --no-install-recommends "${missing[@]}" >&2
}
