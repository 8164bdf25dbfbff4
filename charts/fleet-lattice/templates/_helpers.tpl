{{/* Names and labels shared by every template. */}}

{{- define "fleet-lattice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "fleet-lattice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "fleet-lattice.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "fleet-lattice.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "fleet-lattice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fleet-lattice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fleet-lattice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "fleet-lattice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Annotations on every object the chart owns: the Argo CD sync wave, when set. */}}
{{- define "fleet-lattice.annotations" -}}
{{- if .Values.argocd.syncWave -}}
argocd.argoproj.io/sync-wave: {{ .Values.argocd.syncWave | quote }}
{{- end -}}
{{- end -}}

{{- define "fleet-lattice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fleet-lattice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fleet-lattice.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "fleet-lattice.peeringName" -}}
{{- default (include "fleet-lattice.fullname" .) .Values.ha.peeringName -}}
{{- end -}}

{{/* rbac.namespaced without namespaces would give the operator no permissions anywhere: refuse. */}}
{{- define "fleet-lattice.validate" -}}
{{- if and .Values.rbac.namespaced (not .Values.watchNamespaces) -}}
{{- fail "rbac.namespaced=true needs watchNamespaces: the namespaces to create Roles in and to watch" -}}
{{- end -}}
{{- end -}}
