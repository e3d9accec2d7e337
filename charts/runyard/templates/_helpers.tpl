{{- define "runyard.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "runyard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "runyard.labels" -}}
app.kubernetes.io/name: {{ include "runyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "runyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "runyard.runnerNamespace" -}}
{{- default .Release.Namespace .Values.runners.namespace -}}
{{- end -}}

{{/* runyard.yaml: the values' config with the pools pointed at the runner namespace and image. */}}
{{- define "runyard.config" -}}
{{- $pools := list -}}
{{- range .Values.config.pools -}}
{{- $p := deepCopy . -}}
{{- if eq (default "process" $p.provider) "kubernetes" -}}
{{- $_ := set $p "image" (default $.Values.runners.image $p.image) -}}
{{- $k := default dict $p.kubernetes -}}
{{- $_ := set $k "namespace" (default (include "runyard.runnerNamespace" $) $k.namespace) -}}
{{- $_ := set $p "kubernetes" $k -}}
{{- end -}}
{{- $pools = append $pools $p -}}
{{- end -}}
{{- $cfg := merge (dict "pools" $pools) (omit .Values.config "pools") (dict "host" "0.0.0.0" "port" (int .Values.service.port) "publicUrl" (printf "http://%s.%s.svc:%d" (include "runyard.fullname" .) .Release.Namespace (int .Values.service.port))) -}}
{{- toYaml $cfg -}}
{{- end -}}
