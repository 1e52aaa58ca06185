{{/* Chart name, overridable with nameOverride. */}}
{{- define "leasehold.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: fullnameOverride, else <release>-<chart> (once). */}}
{{- define "leasehold.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of cluster-scoped objects: the full name qualified by the release namespace. */}}
{{- define "leasehold.clusterName" -}}
{{- printf "%s-%s" (include "leasehold.fullname" .) .Release.Namespace | trunc 253 | trimSuffix "-" }}
{{- end }}

{{- define "leasehold.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "leasehold.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leasehold.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "leasehold.labels" -}}
helm.sh/chart: {{ include "leasehold.chart" . }}
{{ include "leasehold.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: leasehold
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "leasehold.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "leasehold.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag, repository:tag@digest, or repository@digest when only a digest is given. */}}
{{- define "leasehold.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- if .Values.image.tag }}
{{- printf "%s:%s@%s" .Values.image.repository .Values.image.tag .Values.image.digest }}
{{- else }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- end }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The leader-election Lease: one per release. */}}
{{- define "leasehold.leaderLease" -}}
{{- default (printf "%s-leader" (include "leasehold.fullname" .)) .Values.leaderElection.leaseName }}
{{- end }}

{{/* The Secret the backend's certificate is kept in. */}}
{{- define "leasehold.tlsSecret" -}}
{{- if eq .Values.tls.mode "secret" }}
{{- required "tls.secretName is required with tls.mode secret" .Values.tls.secretName }}
{{- else }}
{{- default (printf "%s-tls" (include "leasehold.fullname" .)) .Values.tls.secretName }}
{{- end }}
{{- end }}

{{/* Whether the CA is published to runner namespaces: "true" or empty. */}}
{{- define "leasehold.publishesCA" -}}
{{- if and (ne .Values.tls.mode "none") .Values.tls.publishCA.enabled }}true{{ end }}
{{- end }}

{{/* Namespaces of the runnerRbac entries, as a YAML list. */}}
{{- define "leasehold.runnerRbacNamespaces" -}}
{{- $list := list }}
{{- range .Values.runnerRbac }}
{{- $list = append $list .namespace }}
{{- end }}
{{- toYaml (uniq $list) }}
{{- end }}

{{/* More namespaces the CA is published in: tls.publishCA.namespaces and runnerRbac's. */}}
{{- define "leasehold.publishNamespaces" -}}
{{- $list := concat .Values.tls.publishCA.namespaces (include "leasehold.runnerRbacNamespaces" . | fromYamlArray) }}
{{- toYaml (uniq $list) }}
{{- end }}

{{/* Namespaces admitted to the backend: watched, runnerRbac's and networkPolicy.backend's. */}}
{{- define "leasehold.backendClientNamespaces" -}}
{{- $list := concat .Values.watchNamespaces .Values.networkPolicy.backend.namespaces (include "leasehold.runnerRbacNamespaces" . | fromYamlArray) }}
{{- toYaml (uniq $list) }}
{{- end }}

{{/* "true" when the platform assigns the pods' UIDs (uidAssignment). */}}
{{- define "leasehold.platformAssignsUids" -}}
{{- if eq .Values.uidAssignment "platform" }}true
{{- else if and (eq .Values.uidAssignment "auto") (.Capabilities.APIVersions.Has "security.openshift.io/v1") }}true
{{- end }}
{{- end }}

{{/* The pod security context, without fixed IDs when the platform assigns them. */}}
{{- define "leasehold.podSecurityContext" -}}
{{- $context := deepCopy .Values.podSecurityContext }}
{{- if include "leasehold.platformAssignsUids" . }}
{{- $context = omit $context "runAsUser" "runAsGroup" "fsGroup" }}
{{- end }}
{{- toYaml $context }}
{{- end }}

{{- define "leasehold.containerSecurityContext" -}}
{{- $context := deepCopy .Values.securityContext }}
{{- if include "leasehold.platformAssignsUids" . }}
{{- $context = omit $context "runAsUser" "runAsGroup" }}
{{- end }}
{{- toYaml $context }}
{{- end }}

{{/* Whether the kubelet has the preStop sleep action (Kubernetes 1.30 and newer). */}}
{{- define "leasehold.preStopSleep" -}}
{{- if and (gt (int .Values.shutdown.preStopSleepSeconds) 0) (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version) }}true{{ end }}
{{- end }}

{{- define "leasehold.terminationGracePeriodSeconds" -}}
{{- $needed := add .Values.shutdown.preStopSleepSeconds .Values.shutdown.drainSeconds }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $needed 10 }}
{{- else if le (int .Values.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be larger than shutdown.preStopSleepSeconds + shutdown.drainSeconds (%d), or the kubelet kills the pod before its requests drain" (int .Values.terminationGracePeriodSeconds) (int $needed)) }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
Bytes of a Kubernetes memory quantity (512Mi, 1Gi, 536870912, 1G); empty when it cannot tell.
*/}}
{{- define "leasehold.memoryBytes" -}}
{{- $q := toString . }}
{{- $units := dict "Ki" 1024 "Mi" 1048576 "Gi" 1073741824 "Ti" 1099511627776 "k" 1000 "K" 1000 "M" 1000000 "G" 1000000000 "T" 1000000000000 }}
{{- if regexMatch "^[0-9]+$" $q }}
{{- $q }}
{{- else if regexMatch "^[0-9]+(Ki|Mi|Gi|Ti|k|K|M|G|T)$" $q }}
{{- $n := regexFind "^[0-9]+" $q }}
{{- $unit := trimPrefix $n $q }}
{{- mul (int64 $n) (get $units $unit) }}
{{- end }}
{{- end }}

{{/*
Values that fit together, checked before anything renders: the failure names the fix.
*/}}
{{- define "leasehold.validate" -}}
{{- $seen := dict }}
{{- range .Values.runnerRbac }}
{{- $key := printf "%s/%s/%s" .namespace .serviceAccount (default "readWrite" .access) }}
{{- if hasKey $seen $key }}
{{- fail (printf "runnerRbac lists %s/%s with access %s twice: merge the entries (list every state in one)" .namespace .serviceAccount (default "readWrite" .access)) }}
{{- end }}
{{- $_ := set $seen $key true }}
{{- end }}
{{- if and (ne .Values.tls.clientAuth.mode "none") (not .Values.tls.clientAuth.caConfigMap) }}
{{- fail "tls.clientAuth.caConfigMap is required when tls.clientAuth.mode is not none" }}
{{- end }}
{{- if and (ne .Values.tls.clientAuth.mode "none") (eq .Values.tls.mode "none") }}
{{- fail "tls.clientAuth needs HTTPS: tls.mode none serves plain HTTP" }}
{{- end }}
{{- if and (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: give minAvailable or maxUnavailable, not both (set the other to null)" }}
{{- end }}
{{- $limit := "" }}
{{- if and .Values.resources .Values.resources.limits .Values.resources.limits.memory }}
{{- $limit = include "leasehold.memoryBytes" .Values.resources.limits.memory }}
{{- end }}
{{- if $limit }}
{{- /* The heap is 75% of the limit; it must hold 6x the largest state plus 128 MiB (README, Memory). */}}
{{- $heap := div (mul (int64 $limit) 3) 4 }}
{{- $needed := add (mul (int64 .Values.maxStateBytes) 6) 134217728 }}
{{- if lt (int64 $heap) (int64 $needed) }}
{{- fail (printf "maxStateBytes %d needs a heap of at least %d MiB (6 x maxStateBytes + 128 MiB), but resources.limits.memory %s gives %d MiB (75%%): raise the limit to at least %dMi, or lower maxStateBytes" (int64 .Values.maxStateBytes) (div $needed 1048576) (toString .Values.resources.limits.memory) (div $heap 1048576) (add (div (mul $needed 4) (mul 3 1048576)) 1)) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The operator's ServiceAccount as an RBAC subject. */}}
{{- define "leasehold.subject" -}}
- kind: ServiceAccount
  name: {{ include "leasehold.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/*
RBAC rules: exactly the API calls the operator makes, nothing broader.
leasehold.rules.namespaced: in every watched namespace.
*/}}
{{- define "leasehold.rules.namespaced" -}}
- apiGroups: ["leasehold.io"]
  resources: ["terraformstates"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["leasehold.io"]
  resources: ["terraformstates/status"]
  verbs: ["get", "update"]
{{ include "leasehold.rules.leases" . }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "delete"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  # delete: a runner Job skipped for a newer one of its run group, once that one has ended
  verbs: ["get", "list", "watch", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
{{- if include "leasehold.publishesCA" . }}
{{ include "leasehold.rules.caPublisher" . }}
{{- end }}
{{- end }}

{{/* The backend's CA, published as a ConfigMap for runners. */}}
{{- define "leasehold.rules.caPublisher" -}}
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create"]
- apiGroups: [""]
  resources: ["configmaps"]
  resourceNames: [{{ .Values.tls.publishCA.configMapName | quote }}]
  verbs: ["get", "update"]
{{- end }}

{{/*
In the release namespace when it is not watched: the leader-election Lease and the replicas'
heartbeat Leases (one per running replica, named after it, so not by name; every replica watches
them all), the self-signed certificate's Secret (by name), and Events on the operator's own pods.
*/}}
{{- define "leasehold.rules.release" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["create", "get", "list", "watch", "update", "patch", "delete"]
{{- if eq .Values.tls.mode "selfSigned" }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
- apiGroups: [""]
  resources: ["secrets"]
  resourceNames: [{{ include "leasehold.tlsSecret" . | quote }}]
  verbs: ["get", "update"]
{{- end }}
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* Terraform's lock Leases and the leader-election Lease. */}}
{{- define "leasehold.rules.leases" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
{{- end }}

{{/*
Cluster-scoped: the backend's authentication and authorisation, and reading the TerraformState
CRD to tell whether it is older than the operator needs.
*/}}
{{- define "leasehold.rules.reviews" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  resourceNames: ["terraformstates.leasehold.io"]
  verbs: ["get"]
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
- apiGroups: ["authorization.k8s.io"]
  resources: ["subjectaccessreviews", "selfsubjectrulesreviews"]
  verbs: ["create"]
{{- end }}
