{{/*
The operator's permissions: exactly what it calls, no more. tests/unit/test_chart.py derives the set from the
code (the call sites of clients/kube.py, the kinds the kopf handlers watch and write, kopf's own requests) and
fails on any verb granted and not used, or used and not granted. No wildcards.

- The kinds: kopf lists and watches them, and patches metadata (finalizers, its annotations); kopf
  merge-patches the status of the kinds whose handlers write status; the install bus writes SiloInstall status
  by server-side apply (patch). get only where the operator reads one object (FleetHub, SiloInstall).
- fleethubs/siloleaves/fleetusers finalizers update: their children carry ownerReferences with blockOwnerDeletion, which
  the OwnerReferencesPermissionEnforcement admission plugin allows only to who may update the owner's finalizers.
- Children (ConfigMaps, Secrets, Services, StatefulSets, Deployments, PodDisruptionBudgets, NetworkPolicies)
  are written by server-side apply: patch, and create when the object is new. get only for what it reads back.
  No watch: nothing watches them. Garbage collection removes them with their owner, except a SiloLeaf's leaf
  placed in another namespace (spec.leaf.namespace), where no owner reference can point: get (is the name
  ours?) and delete of the leaf's Deployment, Service, ConfigMap, NetworkPolicy and Secrets there.
- Secrets list: one labelled list per hub render for the silo users' public keys (Kubernetes RBAC cannot bind a
  label selector; namespaced mode confines it to the watched namespaces).
- Pods: listed for hub status; patch: the hub servers' config-hash annotation (a merge patch, never a create).
- Events: kopf posts them (create only).
- kopf peering (HA): list/watch of the peering objects; patch only of this release's one, by name.
*/}}
{{- define "fleet-lattice.namespacedRules" -}}
- apiGroups: [fleet.lattice.dev]
  resources: [fleethubs]
  verbs: [get, list, watch, patch]
- apiGroups: [fleet.lattice.dev]
  resources: [siloleaves, fleetstreams, fleetusers]
  verbs: [list, watch, patch]
- apiGroups: [fleet.lattice.dev]
  resources: [siloinstalls]
  # create: a request published by hand on the bus is recorded as a SiloInstall (server-side apply that
  # creates an object is authorized as create too)
  verbs: [get, list, watch, create, patch]
- apiGroups: [fleet.lattice.dev]
  resources: [fleethubs/status, siloleaves/status, fleetstreams/status, fleetusers/status, siloinstalls/status]
  verbs: [patch]
- apiGroups: [fleet.lattice.dev]
  resources: [fleethubs/finalizers, siloleaves/finalizers, fleetusers/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, create, patch, delete]
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, create, patch, delete]
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, create, patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [create, patch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, create, patch, delete]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if and .Values.ha.enabled .Values.watchNamespaces }}
{{ include "fleet-lattice.peeringRules" (list . "kopfpeerings") }}
{{- end }}
{{- end -}}

{{/* kopf peering: ([root, plural]) list/watch every peering object, patch (keep-alive) only this release's. */}}
{{- define "fleet-lattice.peeringRules" -}}
{{- $root := index . 0 }}
{{- $plural := index . 1 -}}
- apiGroups: [kopf.dev]
  resources: [{{ $plural }}]
  verbs: [list, watch]
- apiGroups: [kopf.dev]
  resources: [{{ $plural }}]
  resourceNames: [{{ include "fleet-lattice.peeringName" $root }}]
  verbs: [patch]
{{- end -}}

{{/* What kopf reads cluster-wide in every mode: CRDs (list and watch), to learn which resources exist. */}}
{{- define "fleet-lattice.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end -}}
