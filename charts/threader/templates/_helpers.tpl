{{/*
Names and labels of the standalone threader. Template names carry the chart name: as a subchart
of the umbrella chart they share one namespace of template names with it and with the exporter.
*/}}

{{/* The program's name, not .Chart.Name: that is the alias (`threader`) under the umbrella chart. */}}
{{- define "lumen-threader.name" -}}
{{- default "lumen-threader" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The objects' name; 63 characters at most (a Service name is a DNS label). */}}
{{- define "lumen-threader.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default "lumen-threader" .Values.nameOverride -}}
{{- if or (contains $name .Release.Name) (hasPrefix (printf "%s-" .Release.Name) $name) -}}
{{- /* release `alerts-lumen-threader` -> itself; release `lumen` -> lumen-threader */ -}}
{{- ternary .Release.Name $name (contains $name .Release.Name) | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* What the Deployment, Service, ServiceMonitor and NetworkPolicy select on; never changes. */}}
{{- define "lumen-threader.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lumen-threader.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "lumen-threader.labels" -}}
{{ include "lumen-threader.selectorLabels" . }}
app.kubernetes.io/component: threader
app.kubernetes.io/part-of: lumen
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "lumen-threader.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "lumen-threader.tokenSecret" -}}
{{- default (include "lumen-threader.fullname" .) .Values.tokens.secretName -}}
{{- end -}}

{{- define "lumen-threader.kpsRelease" -}}
{{- $global := .Values.global | default dict -}}
{{- .Values.kpsRelease | default $global.kpsRelease | default "kube-prometheus-stack" -}}
{{- end -}}

{{- define "lumen-threader.keyPrefix" -}}
{{- .Values.keyPrefix | default (printf "lumen:%s:%s:" .Release.Namespace (include "lumen-threader.fullname" .)) -}}
{{- end -}}

{{- define "lumen-threader.claim" -}}
{{- printf "%s-state" (include "lumen-threader.fullname" .) -}}
{{- end -}}

{{/*
The rules of spec.threader that a JSON schema cannot say (the CRD's x-kubernetes-validations),
with the CRD's messages: the chart refuses what the API server would refuse in a policy.
*/}}
{{- define "lumen-threader.validate" -}}
{{- /* The objects' name is the Service's: a DNS-1035 label (a release name may start with a digit or hold dots). */ -}}
{{- $fullname := include "lumen-threader.fullname" . -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $fullname) -}}
{{- fail (printf "the objects' name %q is not a Service name (lowercase letters, digits and '-', starting with a letter): set fullnameOverride" $fullname) -}}
{{- end -}}
{{- $v := .Values -}}
{{- if and $v.store.allowVolatile (ne $v.store.type "redis") -}}
{{- fail "store: allowVolatile only applies to store.type redis" -}}
{{- end -}}
{{- if and (ne $v.store.type "redis") (ne (int $v.replicas) 1) -}}
{{- fail "more than one replica needs store.type redis" -}}
{{- end -}}
{{- if and (eq $v.store.type "redis") (eq $v.store.url "") -}}
{{- fail "store.type redis needs store.url" -}}
{{- end -}}
{{- if and (ne (int $v.replicas) 1) (not ($v.incidents | default dict).databaseURL) -}}
{{- fail "more than one replica needs incidents.databaseURL (a shared PostgreSQL or MySQL/MariaDB)" -}}
{{- end -}}
{{- if and $v.persistence.enabled (ne (int $v.replicas) 1) -}}
{{- fail "persistence needs replicas 1 (several replicas share state through store.type redis and incidents.databaseURL instead)" -}}
{{- end -}}
{{- end -}}
