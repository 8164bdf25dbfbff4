{{/*
The operator's permissions, derived from what it calls (operator/fleetlattice/kube.py and handlers/).
No wildcards; tests/unit/test_chart.py fails on any "*" and checks these verbs.

- The four kinds: kopf watches them and patches metadata (finalizers, progress annotations);
  status is written by merge patch (handlers) and by PUT with resourceVersion (install bus).
- <kind>/finalizers update: children carry ownerReferences with blockOwnerDeletion, which the
  OwnerReferencesPermissionEnforcement admission plugin allows only to who may update the owner's finalizers.
- Children (ConfigMaps, Secrets, Services, StatefulSets, Deployments, PodDisruptionBudgets) are written by
  server-side apply (PATCH; `create` when the object is new); get/list read them back. No watch: nothing
  watches them. delete: Kube.delete, for children the operator stops owning (e.g. a leaf switched to External).
- Pods: listed for hub status (which servers are up).
- Events: kopf posts events about the objects it handles.
*/}}
{{- define "fleet-lattice.namespacedRules" -}}
- apiGroups: [fleet.lattice.dev]
  resources: [fleethubs, siloleaves, fleetstreams, fleetusers]
  verbs: [get, list, watch, patch]
- apiGroups: [fleet.lattice.dev]
  resources: [siloinstalls]
  # create: a request published by hand on the bus is recorded as a SiloInstall (server-side apply that
  # creates an object is authorized as create too)
  verbs: [get, list, watch, create, patch]
- apiGroups: [fleet.lattice.dev]
  resources: [fleethubs/status, siloleaves/status, fleetstreams/status, siloinstalls/status, fleetusers/status]
  verbs: [get, patch, update]
- apiGroups: [fleet.lattice.dev]
  resources: [fleethubs/finalizers, siloleaves/finalizers, fleetstreams/finalizers, siloinstalls/finalizers,
              fleetusers/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [configmaps, secrets, services]
  verbs: [get, list, create, patch, delete]
- apiGroups: [apps]
  resources: [statefulsets, deployments]
  verbs: [get, list, create, patch, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, create, patch, delete]
- apiGroups: [""]
  resources: [pods]
  # patch: the hub's servers get the new config's hash, which makes kubelet refresh their mounted config now
  verbs: [get, list, watch, patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
{{- if .Values.ha.enabled }}
# kopf peering in namespaced mode: one KopfPeering per watched namespace, kept alive by PATCH.
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end -}}

{{/* What kopf reads cluster-wide in every mode: CRDs, to learn which resources exist. */}}
{{- define "fleet-lattice.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- end -}}

{{/* Only cluster-wide (no watchNamespaces): kopf observes namespaces and peers through ClusterKopfPeering. */}}
{{- define "fleet-lattice.clusterwideRules" -}}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- if .Values.ha.enabled }}
- apiGroups: [kopf.dev]
  resources: [clusterkopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end -}}
