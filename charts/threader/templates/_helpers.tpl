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

{{/*
Milliseconds in a Prometheus duration (`1s`, `1500ms`, `1m30s`), the schema's pattern: each unit at
most once, in order. `ms` is read as `x` first, so that `m` (minutes) is one letter.
*/}}
{{- define "lumen-threader.durationMillis" -}}
{{- $duration := replace "ms" "x" . -}}
{{- $millis := 0 -}}
{{- range list "y:31536000000" "w:604800000" "d:86400000" "h:3600000" "m:60000" "s:1000" "x:1" -}}
{{- $unit := splitList ":" . -}}
{{- $found := regexFind (printf "[0-9]+%s" (first $unit)) $duration -}}
{{- if $found -}}
{{- $millis = add $millis (mul (atoi (trimSuffix (first $unit) $found)) (atoi (last $unit))) -}}
{{- end -}}
{{- end -}}
{{- $millis -}}
{{- end -}}

{{/* Milliseconds as the seconds a flag takes: 1500 -> 1.5, 120000 -> 120 (the operator's text). */}}
{{- define "lumen-threader.seconds" -}}
{{- regexReplaceAll "\\.?0+$" (printf "%d.%03d" (div . 1000) (mod . 1000)) "" -}}
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
{{- if and $v.store.allowVolatile (not (has $v.store.type (list "redis" "postgresql"))) -}}
{{- fail "store: allowVolatile only applies to store.type redis or postgresql" -}}
{{- end -}}
{{- $store := $v.store -}}
{{- /* policy/store_patterns.py URL_PASSWORD: user info with a password, or ?password= */ -}}
{{- if regexMatch "^[a-z+]+://[^/@?]*:[^/@?]*@|[?&]password=" $store.url -}}
{{- fail "store.url: store.url must not hold a password: put it in store.passwordSecret" -}}
{{- end -}}
{{- if not (regexMatch "[1-9]" ($store.replicaAckTimeout | default "1s")) -}}
{{- fail "store.replicaAckTimeout: replicaAckTimeout must be more than 0" -}}
{{- end -}}
{{- if and $store.passwordSecret (ne $store.type "redis") -}}
{{- fail "store: passwordSecret only applies to store.type redis" -}}
{{- end -}}
{{- if and $store.databaseURL (ne $store.type "postgresql") -}}
{{- fail "store: databaseURL only applies to store.type postgresql (a Redis store takes url)" -}}
{{- end -}}
{{- if and (eq $store.type "postgresql") (not $store.databaseURL) -}}
{{- fail "store: store.type postgresql needs store.databaseURL (a Secret key holding the URL)" -}}
{{- end -}}
{{- if and (ne $store.type "redis") (or (ne (toString ($store.replicaAcks | default "auto")) "auto") (ne ($store.replicaAckTimeout | default "1s") "1s")) -}}
{{- fail "store: replicaAcks and replicaAckTimeout only apply to store.type redis" -}}
{{- end -}}
{{- if and (not (has $store.type (list "redis" "postgresql"))) (ne (int $v.replicas) 1) -}}
{{- fail "more than one replica needs store.type redis or postgresql" -}}
{{- end -}}
{{- if and (eq $store.type "redis") (eq $store.url "") -}}
{{- fail "store.type redis needs store.url" -}}
{{- end -}}
{{- if and (ne (int $v.replicas) 1) (not ($v.incidents | default dict).databaseURL) (ne $store.type "postgresql") -}}
{{- fail "more than one replica needs incidents.databaseURL (a shared PostgreSQL or MySQL/MariaDB) or store.type postgresql" -}}
{{- end -}}
{{- if and $v.persistence.enabled (ne (int $v.replicas) 1) -}}
{{- fail "persistence needs replicas 1 (several replicas share state through store.type redis and incidents.databaseURL, or store.type postgresql, instead)" -}}
{{- end -}}
{{- end -}}
