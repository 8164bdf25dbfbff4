"""The node's network: addresses, the bridge, routes, sysctls and the egress guard (network_up), and removing
every trace of them, of kube-proxy's rules and of the pods' namespaces (network_down)."""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from .common import run
from .paths import Paths

NODE_NAME = "fleet-lattice"
BRIDGE = "flcni0"  # our own name, so we never touch another CNI's cni0
NODE_IP = "10.244.0.1"  # bridge address: the node's InternalIP and the apiserver's
POD_CIDR = "10.244.0.0/16"
NODE_POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SVC_IP = "10.96.0.1"
DNS_SVC_IP = "10.96.0.10"
CNI_NETWORK = "fleet-lattice"
APISERVER_PORT = 6443
ETCD_CLIENT = "http://127.0.0.1:2379"
GUARD_CHAIN = "FLATTICE-GUARD"
OUR_CHAIN_PREFIXES = ("KUBE-", "CNI-", "FLATTICE-")
CNI_BIN_DIR = Path("/usr/lib/cni")
# Host sysctls that up() (or kubelet) changes; their old values are restored by down().
TOUCHED_SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)


def _sysctl_read(key: str) -> str | None:
    try:
        return Path("/proc/sys", key).read_text().strip()
    except OSError:
        return None


def _sysctl_write(key: str, value: str) -> None:
    with contextlib.suppress(OSError):
        Path("/proc/sys", key).write_text(value + "\n")


def _iptables_guard(binary: str, table: str) -> None:
    """Pod traffic may only stay on the bridge: drop anything routed between it and any other interface."""
    run([binary, "-t", table, "-N", GUARD_CHAIN], check=False)
    run([binary, "-t", table, "-F", GUARD_CHAIN])
    rules = [
        ["-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP"],
        ["!", "-i", BRIDGE, "-o", BRIDGE, "-j", "DROP"],
        ["-s", POD_CIDR, "!", "-o", BRIDGE, "-j", "DROP"],
        ["-d", POD_CIDR, "!", "-o", BRIDGE, "-j", "DROP"],
    ]
    for rule in rules:
        run([binary, "-t", table, "-A", GUARD_CHAIN, *rule])
    if run([binary, "-t", table, "-C", "FORWARD", "-j", GUARD_CHAIN], check=False).returncode != 0:
        run([binary, "-t", table, "-I", "FORWARD", "1", "-j", GUARD_CHAIN])


def network_up(paths: Paths) -> None:
    """Bridge, routes, sysctls and the egress guard. Everything here is undone by network_down."""
    original = {key: _sysctl_read(key) for key in TOUCHED_SYSCTLS}
    orig_file = paths.state / "sysctl-orig.json"
    if not orig_file.exists():
        orig_file.write_text(json.dumps(original))
    if run(["ip", "link", "show", BRIDGE], check=False).returncode != 0:
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "addr", "replace", f"{NODE_IP}/24", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])
    # Unmatched ClusterIPs must go to the bridge (and die there), never to the default route.
    run(["ip", "route", "replace", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP])
    # mangle FORWARD runs before filter FORWARD, where kube-proxy prepends its ACCEPT rules.
    _iptables_guard("iptables", "mangle")
    _iptables_guard("iptables", "filter")
    # Routing between pods and to ClusterIPs needs forwarding; br_netfilter lets
    # kube-proxy's NAT see same-bridge traffic (pod -> ClusterIP -> pod).
    _sysctl_write("net/ipv4/ip_forward", "1")
    _sysctl_write("net/bridge/bridge-nf-call-iptables", "1")


def _sweep_iptables(binary: str) -> None:
    """Remove every chain (and every rule jumping to one) named KUBE-*, CNI-* or FLATTICE-*.

    Done per table with save/restore so the host's own rules stay exactly as they were.
    """
    save = run([f"{binary}-save"], check=False)
    if save.returncode != 0:
        return
    tables: dict[str, list[str]] = {}
    current = ""
    for line in save.stdout.splitlines():
        if line.startswith("*"):
            current = line[1:]
            tables[current] = [line]
        elif current:
            tables[current].append(line)
    for table, lines in tables.items():
        kept = [line for line in lines if not _is_our_rule(line)]
        if kept != lines:
            run([f"{binary}-restore", "-T", table], check=False, input_text="\n".join(kept) + "\n")


def _is_our_rule(line: str) -> bool:
    words = line.split()
    if line.startswith(":"):
        return line[1:].startswith(OUR_CHAIN_PREFIXES)
    if line.startswith("-A ") and len(words) > 1:
        if words[1].startswith(OUR_CHAIN_PREFIXES):
            return True
        for flag, target in itertools.pairwise(words):
            if flag in ("-j", "-g") and target.startswith(OUR_CHAIN_PREFIXES):
                return True
    return False


def _our_netns() -> list[str]:
    """Network namespaces that our CNI set up: their eth0 holds an address in the pod CIDR."""
    netns_dir = Path("/run/netns")
    if not netns_dir.is_dir():
        return []
    ours = []
    for entry in sorted(netns_dir.iterdir()):
        if not entry.name.startswith("cni-"):
            continue
        addrs = run(["ip", "-n", entry.name, "-4", "-o", "addr"], check=False).stdout
        if " 10.244." in addrs or "inet" not in addrs.replace("inet 127.", ""):
            ours.append(entry.name)
    return ours


def network_down(paths: Paths) -> None:
    for netns in _our_netns():
        run(["ip", "netns", "delete", netns], check=False)
    links = run(["ip", "-o", "link", "show", "master", BRIDGE], check=False).stdout
    for line in links.splitlines():
        name = line.split(":", 2)[1].strip().split("@", 1)[0]
        run(["ip", "link", "delete", name], check=False)
    run(["ip", "link", "delete", BRIDGE], check=False)
    run(["ip", "route", "delete", SERVICE_CIDR], check=False)
    for binary in ("iptables", "ip6tables"):
        if shutil.which(binary):
            _sweep_iptables(binary)
    for family in ("ip", "ip6"):  # in case kube-proxy ever ran in nftables mode here
        run(["nft", "delete", "table", family, "kube-proxy"], check=False) if shutil.which("nft") else None
    if shutil.which("conntrack"):
        run(["conntrack", "-D", "-s", POD_CIDR], check=False)
        run(["conntrack", "-D", "-d", SERVICE_CIDR], check=False)
    orig_file = paths.state / "sysctl-orig.json"
    if orig_file.exists():
        for key, value in json.loads(orig_file.read_text()).items():
            if value is not None:
                _sysctl_write(key, value)


def remove_cni_results(sandbox_ids: Sequence[str]) -> None:
    """libcni caches results in /var/lib/cni/results, for our network and containerd's loopback one."""
    results = Path("/var/lib/cni/results")
    if not results.is_dir():
        return
    for entry in results.iterdir():
        if entry.name.startswith(f"{CNI_NETWORK}-") or any(f"-{sid}-" in entry.name for sid in sandbox_ids):
            entry.unlink(missing_ok=True)
