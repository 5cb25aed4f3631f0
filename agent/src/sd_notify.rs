//! Service notifications to systemd (the `sd_notify(3)` protocol): readiness, watchdog
//! keep-alives and shutdown, each one datagram to the Unix socket named by `$NOTIFY_SOCKET`.
//!
//! Every function does nothing and returns `Ok` when `$NOTIFY_SOCKET` is unset, so the agent
//! behaves the same outside systemd. The unit in `packaging/` uses `Type=notify` with
//! `WatchdogSec=`, so under it the agent must call [`ready`] once it follows its files and
//! [`watchdog`] at least every [`watchdog_interval`].

use std::ffi::OsStr;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Environment variable with the address of systemd's notification socket.
const SOCKET_VARIABLE: &str = "NOTIFY_SOCKET";

/// The service finished starting up.
const READY: &str = "READY=1";
/// The service is alive; resets the watchdog timer.
const WATCHDOG: &str = "WATCHDOG=1";
/// The service began shutting down.
const STOPPING: &str = "STOPPING=1";

/// Tells systemd that start-up finished. A `Type=notify` unit counts as started from here.
pub fn ready() -> io::Result<()> {
    send(std::env::var_os(SOCKET_VARIABLE).as_deref(), READY)
}

/// Sends a watchdog keep-alive. Without one within `WatchdogSec=`, systemd kills the service
/// and, with `Restart=on-failure`, starts it again.
pub fn watchdog() -> io::Result<()> {
    send(std::env::var_os(SOCKET_VARIABLE).as_deref(), WATCHDOG)
}

/// Tells systemd that the service is shutting down, so the stop is not taken for a crash.
pub fn stopping() -> io::Result<()> {
    send(std::env::var_os(SOCKET_VARIABLE).as_deref(), STOPPING)
}

/// Returns the interval between watchdog keep-alives: half of `WatchdogSec=`, as
/// `sd_watchdog_enabled(3)` advises. `None` when systemd set no watchdog for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok()?;
    let pid = std::env::var("WATCHDOG_PID").ok();
    keepalive_interval(&usec, pid.as_deref(), std::process::id())
}

/// Computes the keep-alive interval from `$WATCHDOG_USEC` and `$WATCHDOG_PID`. The watchdog
/// applies to this process only when `WATCHDOG_PID` is unset or equals `own_pid`.
fn keepalive_interval(usec: &str, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.parse::<u32>().ok()? != own_pid
    {
        return None;
    }
    let usec: u64 = usec.parse().ok().filter(|usec| *usec > 0)?;
    Some(Duration::from_micros(usec) / 2)
}

/// Sends `state` to the socket at `address`. Does nothing when `address` is `None`.
fn send(address: Option<&OsStr>, state: &str) -> io::Result<()> {
    let Some(address) = address else {
        return Ok(());
    };
    let target = socket_address(address)?;
    let socket = UnixDatagram::unbound()?;
    let sent = socket.send_to_addr(state.as_bytes(), &target)?;
    if sent != state.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!(
                "sent {sent} of {} bytes of {state:?} to {SOCKET_VARIABLE}",
                state.len()
            ),
        ));
    }
    Ok(())
}

/// Parses `$NOTIFY_SOCKET`: an absolute path, or `@name` for a socket in the abstract
/// namespace. systemd 256 and later may also pass `vsock:` addresses, which are rejected.
fn socket_address(address: &OsStr) -> io::Result<SocketAddr> {
    let bytes = address.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        return SocketAddr::from_abstract_name(name);
    }
    if bytes.starts_with(b"/") {
        return SocketAddr::from_pathname(address);
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "unsupported {SOCKET_VARIABLE} address {:?}: expected an absolute path or @name",
            address
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::process::Command;

    /// Binds a datagram socket in a new temporary directory.
    fn listener() -> (tempfile::TempDir, std::path::PathBuf, UnixDatagram) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        (dir, path, socket)
    }

    fn receive(socket: &UnixDatagram) -> String {
        let mut buffer = [0u8; 256];
        let length = socket.recv(&mut buffer).unwrap();
        String::from_utf8(buffer[..length].to_vec()).unwrap()
    }

    #[test]
    fn send_to_path_delivers_datagram() {
        let (_dir, path, socket) = listener();
        send(Some(path.as_os_str()), READY).unwrap();
        assert_eq!(receive(&socket), "READY=1");
    }

    #[test]
    fn send_to_abstract_name_delivers_datagram() {
        let name = format!("edgealert-sd-notify-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&address).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        send(Some(OsStr::new(&format!("@{name}"))), WATCHDOG).unwrap();
        assert_eq!(receive(&socket), "WATCHDOG=1");
    }

    #[test]
    fn send_without_socket_is_noop() {
        assert!(send(None, STOPPING).is_ok());
    }

    #[test]
    fn send_rejects_relative_and_vsock_addresses() {
        for address in ["notify.sock", "vsock:2:1234", ""] {
            let error = send(Some(OsStr::new(address)), READY).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{address}");
        }
    }

    #[test]
    fn send_to_missing_socket_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.sock");
        let error = send(Some(path.as_os_str()), READY).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn keepalive_interval_is_half_the_timeout() {
        assert_eq!(
            keepalive_interval("30000000", None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            keepalive_interval("30000000", Some("7"), 7),
            Some(Duration::from_secs(15))
        );
    }

    #[test]
    fn keepalive_interval_for_other_pid_is_none() {
        assert_eq!(keepalive_interval("30000000", Some("8"), 7), None);
        assert_eq!(keepalive_interval("30000000", Some("x"), 7), None);
    }

    #[test]
    fn keepalive_interval_rejects_invalid_timeout() {
        assert_eq!(keepalive_interval("0", None, 7), None);
        assert_eq!(keepalive_interval("-5", None, 7), None);
        assert_eq!(keepalive_interval("", None, 7), None);
    }

    /// Runs [`child_sends_every_state`] in a child process of this test binary with
    /// `$NOTIFY_SOCKET` set, because the public functions read the environment and this
    /// crate forbids the `unsafe` `std::env::set_var`.
    #[test]
    fn public_functions_send_exact_datagrams() {
        let (_dir, path, socket) = listener();
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "sd_notify::tests::child_sends_every_state"])
            .args(["--ignored", "--test-threads=1"])
            .env(SOCKET_VARIABLE, &path)
            .env("WATCHDOG_USEC", "30000000")
            .env_remove("WATCHDOG_PID")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert_eq!(receive(&socket), "READY=1");
        assert_eq!(receive(&socket), "WATCHDOG=1");
        assert_eq!(receive(&socket), "STOPPING=1");
    }

    /// Child side of [`public_functions_send_exact_datagrams`]. Without `$NOTIFY_SOCKET`
    /// every call is a no-op, so running it alone passes and sends nothing.
    #[test]
    #[ignore = "run by public_functions_send_exact_datagrams in a child process"]
    fn child_sends_every_state() {
        if std::env::var_os(SOCKET_VARIABLE).is_some() {
            assert_eq!(watchdog_interval(), Some(Duration::from_secs(15)));
        }
        ready().unwrap();
        watchdog().unwrap();
        stopping().unwrap();
    }
}
