{{/*
Names, labels and config.json of the standalone exporter. Template names carry the chart name: as
a subchart of the umbrella chart they share one namespace of template names with it and with the
threader.
*/}}

{{/* The program's name, not .Chart.Name: that is the alias (`exporter`) under the umbrella chart. */}}
{{- define "lumen-exporter.name" -}}
{{- default "lumen-exporter" .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The objects' name; 63 characters at most (a Service name is a DNS label). */}}
{{- define "lumen-exporter.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default "lumen-exporter" .Values.nameOverride -}}
{{- if or (contains $name .Release.Name) (hasPrefix (printf "%s-" .Release.Name) $name) -}}
{{- /* release `alerts-lumen-threader` -> itself; release `lumen` -> lumen-threader */ -}}
{{- ternary .Release.Name $name (contains $name .Release.Name) | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* What the Deployment, Service, ServiceMonitor and NetworkPolicy select on; never changes. */}}
{{- define "lumen-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lumen-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "lumen-exporter.labels" -}}
{{ include "lumen-exporter.selectorLabels" . }}
app.kubernetes.io/component: exporter
app.kubernetes.io/part-of: lumen
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "lumen-exporter.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "lumen-exporter.kpsRelease" -}}
{{- $global := .Values.global | default dict -}}
{{- .Values.kpsRelease | default $global.kpsRelease | default "kube-prometheus-stack" -}}
{{- end -}}

{{- define "lumen-exporter.claim" -}}
{{- printf "%s-state" (include "lumen-exporter.fullname" .) -}}
{{- end -}}

{{/* The pipeline token's Secret key when the pipeline is on (the only time it is mounted). */}}
{{- define "lumen-exporter.pipelineToken" -}}
{{- if .Values.pipeline.enabled -}}
{{- toJson .Values.pipeline.token -}}
{{- end -}}
{{- end -}}

{{/*
config.json, as the operator writes it (render/exporter.py exporter_config): every key written,
defaults included, in the exporter's snake_case; header values are files, never inlined.
toPrettyJson sorts the keys like the operator's json.dumps(sort_keys=True).
*/}}
{{- define "lumen-exporter.config" -}}
{{- $probes := list -}}
{{- range $probe := .Values.probes -}}
{{- $config := dict
  "name" $probe.name
  "url" $probe.url
  "interval" (ternary $probe.interval "20s" (hasKey $probe "interval"))
  "timeout" (ternary $probe.timeout "5s" (hasKey $probe "timeout"))
  "method" (ternary $probe.method "GET" (hasKey $probe "method"))
  "expected_status" ($probe.expectedStatus | default list)
  "health_metric" (ternary $probe.healthMetric "lumen_probe_up" (hasKey $probe "healthMetric"))
  "response_time_metric" (ternary $probe.responseTimeMetric "lumen_probe_response_time_ms" (hasKey $probe "responseTimeMetric"))
  "fields" ($probe.fields | default dict)
  "value_maps" ($probe.valueMaps | default dict)
  "count_values" ($probe.countValues | default dict)
  "max_distinct_values" (ternary $probe.maxDistinctValues 20 (hasKey $probe "maxDistinctValues"))
-}}
{{- with $probe.headers -}}
{{- $files := dict -}}
{{- range $index, $header := . -}}
{{- $_ := set $files $header.name (printf "/etc/lumen/exporter/headers/%s/%d" $probe.name $index) -}}
{{- end -}}
{{- $_ := set $config "header_files" $files -}}
{{- end -}}
{{- $probes = append $probes $config -}}
{{- end -}}
{{- $pipeline := dict "enabled" .Values.pipeline.enabled -}}
{{- if hasKey .Values.pipeline "expireAfter" -}}
{{- $_ := set $pipeline "expire_after" .Values.pipeline.expireAfter -}}
{{- end -}}
{{- /* One line break at the end, as in the operator's file. */ -}}
{{- printf "%s\n" (dict "probes" $probes "pipeline" $pipeline | toPrettyJson) -}}
{{- end -}}

{{/*
The rules of spec.exporter that a JSON schema cannot say (the CRD's x-kubernetes-validations and
list-map keys), with the CRD's messages: the chart refuses what the API server would refuse.
*/}}
{{- define "lumen-exporter.validate" -}}
{{- /* The objects' name is the Service's: a DNS-1035 label (a release name may start with a digit or hold dots). */ -}}
{{- $fullname := include "lumen-exporter.fullname" . -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $fullname) -}}
{{- fail (printf "the objects' name %q is not a Service name (lowercase letters, digits and '-', starting with a letter): set fullnameOverride" $fullname) -}}
{{- end -}}
{{- if and .Values.pipeline.enabled (not .Values.pipeline.token) -}}
{{- fail "pipeline.enabled needs pipeline.token" -}}
{{- end -}}
{{- $names := list -}}
{{- range $probe := .Values.probes -}}
{{- if has $probe.name $names -}}
{{- fail (printf "probes: duplicate probe name %q" $probe.name) -}}
{{- end -}}
{{- $names = append $names $probe.name -}}
{{- range $metric, $_ := ($probe.valueMaps | default dict) -}}
{{- if not (hasKey ($probe.fields | default dict) $metric) -}}
{{- fail (printf "probes[%s]: every key of valueMaps must be a key of fields (a value map converts that field's strings)" $probe.name) -}}
{{- end -}}
{{- end -}}
{{- $headers := list -}}
{{- range $header := ($probe.headers | default list) -}}
{{- if has (lower $header.name) $headers -}}
{{- fail (printf "probes[%s].headers: duplicate header %q (each at most once per probe, whatever its case)" $probe.name $header.name) -}}
{{- end -}}
{{- $headers = append $headers (lower $header.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
