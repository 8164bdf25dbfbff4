"""Starting the components: etcd, kube-apiserver (with its audit log), controller-manager and scheduler,
containerd (with the CNI config), kubelet and kube-proxy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .api import api_ok, http_ok
from .certs import write_kubeconfig
from .common import run
from .network import (
    APISERVER_PORT,
    BRIDGE,
    CNI_BIN_DIR,
    CNI_NETWORK,
    DNS_SVC_IP,
    ETCD_CLIENT,
    NODE_IP,
    NODE_NAME,
    NODE_POD_CIDR,
    POD_CIDR,
    SERVICE_CIDR,
)
from .paths import Paths
from .pins import PAUSE_IMAGE
from .processes import start_process
from .waiting import wait_for

COMPONENTS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "containerd",
    "kubelet",
    "kube-proxy",
)


def start_etcd(paths: Paths, bins: Path) -> None:
    start_process(
        paths,
        "etcd",
        [
            str(bins / "etcd"),
            "--name=fleet-lattice",
            f"--data-dir={paths.state / 'etcd'}",
            f"--listen-client-urls={ETCD_CLIENT}",
            f"--advertise-client-urls={ETCD_CLIENT}",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=fleet-lattice=http://127.0.0.1:2380",
            "--listen-metrics-urls=http://127.0.0.1:2381",
            "--unsafe-no-fsync",  # a throwaway test cluster: trade durability for speed
            "--log-level=warn",
        ],
    )
    wait_for(lambda: http_ok(f"{ETCD_CLIENT}/health"), 60, "etcd /health", 0.2)


# Requests by the cluster's own components are not logged; everything else (the operator, tests,
# benchmarks, kubectl) is, one JSON line per request with its user agent: bench/ counts the operator's
# API requests from it.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    userGroups: ["system:nodes", "system:serviceaccounts:kube-system"]
  - level: None
    users: ["system:kube-controller-manager", "system:kube-scheduler", "system:kube-proxy", "system:apiserver"]
  - level: Metadata
"""


def audit_log_path(paths: Paths) -> Path:
    return paths.logs / "audit.jsonl"  # not *.log: log_tails() would print it


def start_apiserver(paths: Paths, bins: Path) -> None:
    pki = paths.pki
    policy = paths.state / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    start_process(
        paths,
        "kube-apiserver",
        [
            str(bins / "kube-apiserver"),
            f"--etcd-servers={ETCD_CLIENT}",
            # The bridge address, not 127.0.0.1: pods (CoreDNS, the operator's
            # workloads) reach the apiserver through the kubernetes Service,
            # whose endpoint must be an address pods can route to.
            f"--bind-address={NODE_IP}",
            f"--advertise-address={NODE_IP}",
            f"--secure-port={APISERVER_PORT}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            f"--requestheader-client-ca-file={pki / 'ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
            f"--audit-policy-file={policy}",
            f"--audit-log-path={audit_log_path(paths)}",
            "--audit-log-maxsize=2000",  # MB: one file for a whole benchmark run
            "--audit-log-maxbackup=1",
            "--profiling=false",
            "--v=0",
        ],
    )


def wait_apiserver(paths: Paths) -> None:
    wait_for(lambda: api_ok(paths, "/readyz"), 120, "kube-apiserver /readyz", 0.3)


def start_controllers(paths: Paths, bins: Path) -> None:
    pki, state = paths.pki, paths.state
    for name, cert in (("controller-manager", "controller-manager"), ("scheduler", "scheduler")):
        write_kubeconfig(paths, state / f"{name}.kubeconfig", cert)
    cm_kc = state / "controller-manager.kubeconfig"
    start_process(
        paths,
        "kube-controller-manager",
        [
            str(bins / "kube-controller-manager"),
            f"--kubeconfig={cm_kc}",
            f"--authentication-kubeconfig={cm_kc}",
            f"--authorization-kubeconfig={cm_kc}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            "--allocate-node-cidrs=true",
            f"--cluster-cidr={POD_CIDR}",
            "--node-cidr-mask-size=24",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--controllers=*,bootstrapsigner,tokencleaner",
            "--profiling=false",
        ],
    )
    sched_kc = state / "scheduler.kubeconfig"
    start_process(
        paths,
        "kube-scheduler",
        [
            str(bins / "kube-scheduler"),
            f"--kubeconfig={sched_kc}",
            f"--authentication-kubeconfig={sched_kc}",
            f"--authorization-kubeconfig={sched_kc}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            "--profiling=false",
        ],
    )


def _containerd_config(paths: Paths) -> str:
    base = paths.state / "containerd"
    return f"""\
version = 2
root = "{base / "root"}"
state = "{base / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{paths.containerd_sock}"

[ttrpc]
  address = "{base / "containerd.ttrpc.sock"}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # Never ask for an OOM score below containerd's own: lowering one needs
  # CAP_SYS_RESOURCE, which sandboxed hosts (like this VM) may not grant.
  restrict_oom_score_adj = true

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{base / "runc"}"

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{paths.state / "cni" / "net.d"}"
  max_conf_num = 1
"""


def _cni_config(paths: Paths) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,  # never NAT pod traffic towards the outside
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": NODE_POD_CIDR, "gateway": NODE_IP}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.state / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def start_containerd(paths: Paths) -> None:
    base = paths.state / "containerd"
    base.mkdir(parents=True, exist_ok=True)
    (base / "config.toml").write_text(_containerd_config(paths))
    netd = paths.state / "cni" / "net.d"
    netd.mkdir(parents=True, exist_ok=True)
    (netd / f"10-{CNI_NETWORK}.conflist").write_text(json.dumps(_cni_config(paths), indent=2) + "\n")
    start_process(paths, "containerd", ["containerd", "--config", str(base / "config.toml"), "--log-level", "warn"])
    ctr = ["ctr", "--address", str(paths.containerd_sock), "version"]
    wait_for(lambda: run(ctr, check=False).returncode == 0, 60, "containerd to answer", 0.2)


def _kubelet_config(paths: Paths) -> dict[str, Any]:
    pki = paths.pki
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki / "kubelet.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet.key"),
        "containerRuntimeEndpoint": f"unix://{paths.containerd_sock}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,  # this host is cgroup v1 (hybrid); 1.34 still supports it
        "failSwapOn": False,
        "clusterDNS": [DNS_SVC_IP],
        "clusterDomain": "cluster.local",
        "resolvConf": "",  # pods never inherit the host's (external) resolver
        "podLogsDir": str(paths.state / "pod-logs"),  # not /var/log/pods
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        # A test node: never evict or garbage-collect our (un-pullable) images.
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "maxPods": 110,
        "oomScoreAdj": 0,  # see restrict_oom_score_adj: lowering it may be forbidden here
    }


def _kube_proxy_config(paths: Paths) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(paths.state / "kube-proxy.kubeconfig")},
        "mode": "iptables",
        "oomScoreAdj": 0,
        "clusterCIDR": POD_CIDR,
        "hostnameOverride": NODE_NAME,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # NodePorts only on the bridge address, never on eth0.
        "nodePortAddresses": [f"{NODE_IP}/32"],
        "iptables": {"localhostNodePorts": False, "minSyncPeriod": "1s", "syncPeriod": "30s"},
        # Zero = leave the host's conntrack sysctls alone.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }


def start_node(paths: Paths, bins: Path) -> None:
    kdir = paths.state / "kubelet"
    kdir.mkdir(parents=True, exist_ok=True)
    (kdir / "config.json").write_text(json.dumps(_kubelet_config(paths), indent=2) + "\n")
    write_kubeconfig(paths, paths.state / "kubelet.kubeconfig", "kubelet-client")
    start_process(
        paths,
        "kubelet",
        [
            str(bins / "kubelet"),
            f"--config={kdir / 'config.json'}",
            f"--kubeconfig={paths.state / 'kubelet.kubeconfig'}",
            f"--root-dir={kdir / 'root'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--v=0",
        ],
    )
    write_kubeconfig(paths, paths.state / "kube-proxy.kubeconfig", "kube-proxy")
    (paths.state / "kube-proxy.json").write_text(json.dumps(_kube_proxy_config(paths), indent=2) + "\n")
    start_process(paths, "kube-proxy", [str(bins / "kube-proxy"), f"--config={paths.state / 'kube-proxy.json'}"])
