{{/* The release's name prefix for every object. */}}
{{- define "switchyard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "switchyard.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels of one service's pods: pass (list $ "ingress"). */}}
{{- define "switchyard.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ $.Chart.Name }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/*
The Switchyard configuration: .Values.config with the listen addresses set
from .Values.ports, data_dir on the pod's emptyDir and the NATS credentials
file when one is mounted.
*/}}
{{- define "switchyard.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $_ := set $cfg "data_dir" "/var/lib/switchyard" -}}
{{- $_ = set $cfg "ops" (mergeOverwrite (default (dict) $cfg.ops) (dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.ops)))) -}}
{{- $_ = set $cfg "ingress" (mergeOverwrite (default (dict) $cfg.ingress) (dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.ingress)))) -}}
{{- $_ = set $cfg "auditor" (mergeOverwrite (default (dict) $cfg.auditor) (dict "listen" (printf "0.0.0.0:%d" (int .Values.ports.auditor)))) -}}
{{- if .Values.natsCredentials.secretName -}}
{{- $_ = set $cfg "nats" (mergeOverwrite (default (dict) $cfg.nats) (dict "credentials_file" "/etc/switchyard/nats/nats.creds")) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
