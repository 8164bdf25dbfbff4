"""The local cluster launcher: a real single-node Kubernetes cluster on this machine, without Docker, for the
e2e tests, the demo and the benchmarks. Standard library only: it runs before any project dependency is installed.

Its import root is tests/e2e/cluster: pyproject.toml's pytest `pythonpath` has it; the command line is
`python tests/e2e/cluster/cluster <command>` (see cli.py). One module per concern:

    pins        versions, image refs, Go build specs        builds      Go builds and images into the cache
    paths       state and cache dirs, the cache key         images      OCI archives, import into the node
    certs       PKI, kubeconfigs                            network     bridge, iptables guard, sysctls, netns
    processes   start/stop/reap components, container kill  cleanup     mounts, cgroups, log links, state dir
    components  etcd, apiserver, controllers, containerd,   coredns     CoreDNS objects, the DNS smoke test
                kubelet, kube-proxy                         api         apiserver over HTTPS, kubectl
    lifecycle   up, down, health, status, logs,             cli         argparse main (__main__: python -m)
                the API server's restart (fault suite)
    common      log, ClusterError, host commands            waiting     wait_for: deadline-based polling
    hostenv     shared with the repo's other tools: cache_root, go_version, go_env, free_port
    argocd      the cached Argo CD binary: component env, offline health check (the GitOps e2e, unit tests)
"""

from .api import api_get, kubectl
from .builds import build, build_argocd
from .common import ClusterError
from .components import audit_log_path
from .hostenv import cache_root, free_port, go_env, go_version
from .images import import_image_archive
from .lifecycle import components_running, down, is_healthy, log_tails, restart_apiserver, status, up
from .paths import Paths, build_key
from .pins import (
    BUSYBOX_IMAGE,
    COREDNS_IMAGE,
    COREDNS_VERSION,
    ETCD_VERSION,
    IMAGES,
    KUBE_VERSION,
    NATS_IMAGE,
    NATS_SERVER_VERSION,
    PAUSE_IMAGE,
    RELOADER_IMAGE,
    RELOADER_VERSION,
)
from .waiting import WaitTimeout, async_wait_for, wait_for

__all__ = [
    "BUSYBOX_IMAGE",
    "COREDNS_IMAGE",
    "COREDNS_VERSION",
    "ETCD_VERSION",
    "IMAGES",
    "KUBE_VERSION",
    "NATS_IMAGE",
    "NATS_SERVER_VERSION",
    "PAUSE_IMAGE",
    "RELOADER_IMAGE",
    "RELOADER_VERSION",
    "ClusterError",
    "Paths",
    "WaitTimeout",
    "api_get",
    "async_wait_for",
    "audit_log_path",
    "build",
    "build_argocd",
    "build_key",
    "cache_root",
    "components_running",
    "down",
    "free_port",
    "go_env",
    "go_version",
    "import_image_archive",
    "is_healthy",
    "kubectl",
    "log_tails",
    "restart_apiserver",
    "status",
    "up",
    "wait_for",
]
