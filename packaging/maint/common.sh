# Functions shared by the .deb and .rpm maintainer scripts. scripts/package inserts this file
# where a script has the line #EDGEALERT_COMMON#. Each function can run any number of times
# with the same result.
#
# Every path is under $root, taken from $DPKG_ROOT: dpkg sets it when it installs into
# another root directory (`dpkg --root` with `--force-script-chrootless`), and
# scripts/test-packages sets it to run the .rpm scriptlets in a temporary root as well. On a
# normal install it is empty. With a root set, nothing touches the running system.

root="${DPKG_ROOT:-}"
unit=edgealert.service
credential="/etc/edgealert/credentials/slack-security"

# Succeeds when systemd manages this boot and the script acts on the running system.
systemd_running() {
    [ -z "$root" ] && [ -d /run/systemd/system ]
}

has_systemctl() {
    command -v systemctl >/dev/null 2>&1
}

# Creates the system user and group edgealert from /usr/lib/sysusers.d/edgealert.conf, or
# with useradd on hosts without systemd-sysusers.
create_user() {
    if grep -q '^edgealert:' "$root/etc/passwd" 2>/dev/null; then
        return 0
    fi
    # An existing edgealert group, left by an earlier install, becomes the user's group.
    group="--user-group"
    if grep -q '^edgealert:' "$root/etc/group" 2>/dev/null; then
        group="--gid edgealert"
    fi
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers --root="${root:-/}" edgealert.conf
    elif [ -n "$root" ]; then
        # shellcheck disable=SC2086 # $group is two words on purpose.
        useradd --prefix "$root" --system $group --home-dir /var/lib/edgealert \
            --no-create-home --shell /usr/sbin/nologin --comment "edgealert osquery agent" edgealert
    else
        # shellcheck disable=SC2086 # $group is two words on purpose.
        useradd --system $group --home-dir /var/lib/edgealert \
            --no-create-home --shell /usr/sbin/nologin --comment "edgealert osquery agent" edgealert
    fi
}

# Creates the root-only directory of the files that LoadCredential= reads.
create_credentials_dir() {
    install -d -m 0700 "$root/etc/edgealert/credentials"
}

enable_unit() {
    has_systemctl || return 0
    if systemd_running; then
        systemctl --quiet enable "$unit"
    else
        systemctl --quiet --root="${root:-/}" enable "$unit"
    fi
}

# Disables the unit while its file is still installed.
disable_unit() {
    has_systemctl || return 0
    if systemd_running; then
        systemctl --quiet disable "$unit"
    else
        systemctl --quiet --root="${root:-/}" disable "$unit"
    fi
}

# Removes the enablement link after the unit file is gone, when `systemctl disable` no longer
# can. The unit's only [Install] target is multi-user.target.
forget_unit() {
    rm -f "$root/etc/systemd/system/multi-user.target.wants/$unit"
}

daemon_reload() {
    if systemd_running; then
        systemctl daemon-reload || echo "edgealert: systemctl daemon-reload failed" >&2
    fi
}

warn_not_started() {
    echo "edgealert: the service did not start; see 'systemctl status $unit'." >&2
}

# Starts the service if it is enabled, so an administrator's `systemctl disable` or `mask`
# stays in effect across upgrades. A failed start is reported and does not fail the package.
start_unit() {
    systemd_running || return 0
    systemctl --quiet is-enabled "$unit" 2>/dev/null || return 0
    systemctl start "$unit" || warn_not_started
}

# Restarts the service if it is enabled. The .deb postinst uses it on upgrade, so a reinstall
# after a remove starts the service again.
restart_unit() {
    systemd_running || return 0
    systemctl --quiet is-enabled "$unit" 2>/dev/null || return 0
    systemctl restart "$unit" || warn_not_started
}

# Restarts the service only if it is running. The .rpm %postun uses it on upgrade.
try_restart_unit() {
    systemd_running || return 0
    systemctl try-restart "$unit" || warn_not_started
}

stop_unit() {
    systemd_running || return 0
    systemctl stop "$unit" || true
}

# Tells the administrator where the webhook URL goes while it is missing.
hint_credential() {
    if [ ! -e "$root$credential" ]; then
        echo "edgealert: write the Slack webhook URL of slack:security to $credential" \
            "(owner root, mode 0600), then run 'systemctl reset-failed $unit'" \
            "and 'systemctl restart $unit'." >&2
    fi
}

# Deletes the state, the file outputs and the whole configuration directory, including
# files an administrator added there, such as credentials.
purge_data() {
    rm -rf "$root/var/lib/edgealert" "$root/var/log/edgealert" "$root/etc/edgealert"
}

# Removes the package's own directories that an erase left empty. rpm removes the files of a
# package built by cargo-generate-rpm but not its directories, because the package lists
# none. Shared directories such as /usr/share/zsh/site-functions stay.
remove_empty_dirs() {
    for dir in /etc/edgealert /usr/share/edgealert /usr/share/doc/edgealert /usr/share/licenses/edgealert; do
        if [ -d "$root$dir" ]; then
            find "$root$dir" -depth -type d -empty -delete
        fi
    done
}
