{{/*
The admissionregistration.k8s.io version to render an admission policy kind in: the value when
one is set, else the newest of "v1" and "v1beta1" that the cluster serves for that kind, else ""
(not served: the policy is left out). `helm install` and `helm upgrade` ask the cluster; `helm
template` knows nothing of it unless given --api-versions.
Arguments: dict "root" . "kind" KIND "apiVersion" VALUE.
*/}}
{{- define "leasehold.admissionVersion" -}}
{{- $found := .apiVersion -}}
{{- range $version := list "v1" "v1beta1" -}}
{{- if and (not $found) ($.root.Capabilities.APIVersions.Has (printf "admissionregistration.k8s.io/%s/%s" $version $.kind)) -}}
{{- $found = $version -}}
{{- end -}}
{{- end -}}
{{- $found -}}
{{- end }}

{{/* The admission policies' bindings apply in the watched namespaces only, when some are set. */}}
{{- define "leasehold.admissionNamespaces" -}}
{{- with .Values.watchNamespaces }}
matchResources:
  namespaceSelector:
    matchExpressions:
      - key: kubernetes.io/metadata.name
        operator: In
        values:
          {{- toYaml . | nindent 10 }}
{{- end }}
{{- end }}

{{/* The operator's identity as the API server sees it. */}}
{{- define "leasehold.operatorUser" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "leasehold.serviceAccountName" .) }}
{{- end }}
