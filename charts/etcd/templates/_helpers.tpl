{{/* fullname: the release name if it contains "etcd", else <release>-etcd (Bitnami's rule). */}}
{{- define "etcd.fullname" -}}
{{- if contains "etcd" .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-etcd" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "etcd.headless" -}}
{{- printf "%s-headless" (include "etcd.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The pod selector, exactly Bitnami's. */}}
{{- define "etcd.selectorLabels" -}}
app.kubernetes.io/name: etcd
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: etcd
{{- end -}}

{{- define "etcd.labels" -}}
{{ include "etcd.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "etcd.image" -}}
{{- $tag := .Values.image.tag | default (printf "v%s" (.Chart.AppVersion | trimPrefix "v")) -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}
{{- $repo = printf "%s/%s" .Values.image.registry .Values.image.repository -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (toString $tag) -}}
{{- end -}}
{{- end -}}

{{- define "etcd.secretName" -}}
{{- .Values.auth.rbac.existingSecret | default (include "etcd.fullname" .) -}}
{{- end -}}

{{- define "etcd.secretPasswordKey" -}}
{{- if and .Values.auth.rbac.existingSecret .Values.auth.rbac.existingSecretPasswordKey -}}
{{- .Values.auth.rbac.existingSecretPasswordKey -}}
{{- else -}}
etcd-root-password
{{- end -}}
{{- end -}}

{{- define "etcd.clientProtocol" -}}
{{- ternary "https" "http" .Values.auth.client.secureTransport -}}
{{- end -}}

{{- define "etcd.peerProtocol" -}}
{{- ternary "https" "http" .Values.auth.peer.secureTransport -}}
{{- end -}}

{{/* The DNS domain of the headless Service: <fullname>-headless.<ns>.svc.<clusterDomain>. */}}
{{- define "etcd.peerDomain" -}}
{{- printf "%s.%s.svc.%s" (include "etcd.headless" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{/* Every ordinal's member: <fullname>-N=<peer protocol>://<fullname>-N.<headless domain>:<peer port>. */}}
{{- define "etcd.initialCluster" -}}
{{- $full := include "etcd.fullname" . -}}
{{- $proto := include "etcd.peerProtocol" . -}}
{{- $domain := include "etcd.peerDomain" . -}}
{{- $port := int .Values.containerPorts.peer -}}
{{- $out := list -}}
{{- range $i := until (int .Values.replicaCount) -}}
{{- $out = append $out (printf "%s-%d=%s://%s-%d.%s:%d" $full $i $proto $full $i $domain $port) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/* One probe: `etcd-member probe` with a timeout just under the kubelet's. */}}
{{- define "etcd.probe" -}}
exec:
  command:
    - /usr/local/bin/etcd-member
    - probe
    - --timeout={{ max 1 (sub (int .timeoutSeconds) 1) }}s
initialDelaySeconds: {{ .initialDelaySeconds }}
periodSeconds: {{ .periodSeconds }}
timeoutSeconds: {{ .timeoutSeconds }}
successThreshold: {{ .successThreshold | default 1 }}
failureThreshold: {{ .failureThreshold }}
{{- end -}}
