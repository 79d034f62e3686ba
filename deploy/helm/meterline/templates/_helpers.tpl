{{/* Names and labels. */}}
{{- define "meterline.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "meterline.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "meterline.labels" -}}
{{ include "meterline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "meterline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "meterline.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "meterline.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The worker replica count: worker.replicas, else the events topic's partitions; never more
than the partitions (a worker of the group without a partition only waits).
*/}}
{{- define "meterline.workerReplicas" -}}
{{- $partitions := int .Values.kafka.eventsPartitions -}}
{{- if lt $partitions 1 -}}
{{- fail "kafka.eventsPartitions must be at least 1" -}}
{{- end -}}
{{- $replicas := $partitions -}}
{{- if not (kindIs "invalid" .Values.worker.replicas) -}}
{{- $replicas = int .Values.worker.replicas -}}
{{- end -}}
{{- if gt $replicas $partitions -}}
{{- fail (printf "worker.replicas (%d) is more than kafka.eventsPartitions (%d): each partition is read by one worker, the others would only wait" $replicas $partitions) -}}
{{- end -}}
{{- $replicas -}}
{{- end -}}

{{/*
The METERLINE_* settings (schemas/settings.py) every container of the chart reads:
where Kafka and ClickHouse are, and extraEnv.
*/}}
{{- define "meterline.connectionEnv" -}}
- name: METERLINE_KAFKA_HOST
  value: {{ .Values.kafka.host | quote }}
- name: METERLINE_KAFKA_PORT
  value: {{ .Values.kafka.port | quote }}
- name: METERLINE_EVENTS_TOPIC
  value: {{ .Values.kafka.eventsTopic | quote }}
- name: METERLINE_EVENTS_PARTITIONS
  value: {{ .Values.kafka.eventsPartitions | quote }}
- name: METERLINE_KAFKA_COMPRESSION
  value: {{ .Values.kafka.compression | quote }}
- name: METERLINE_CLICKHOUSE_HOST
  value: {{ .Values.clickhouse.host | quote }}
- name: METERLINE_CLICKHOUSE_TCP_PORT
  value: {{ .Values.clickhouse.tcpPort | quote }}
- name: METERLINE_CLICKHOUSE_HTTP_PORT
  value: {{ .Values.clickhouse.httpPort | quote }}
- name: METERLINE_CLICKHOUSE_DATABASE
  value: {{ .Values.clickhouse.database | quote }}
- name: METERLINE_CLICKHOUSE_CLUSTER
  value: {{ .Values.clickhouse.cluster | quote }}
{{- range $name, $value := .Values.extraEnv }}
{{- if not (hasPrefix "METERLINE_" $name) }}
{{- fail (printf "extraEnv.%s: only METERLINE_* settings belong here" $name) }}
{{- end }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* The connection settings and the catalog files, for the worker and the API. */}}
{{- define "meterline.env" -}}
{{ include "meterline.connectionEnv" . }}
- name: METERLINE_METERS_FILE
  value: /etc/meterline/catalog/meters.yaml
- name: METERLINE_RATE_CARD_FILE
  value: /etc/meterline/catalog/rate-card.yaml
- name: METERLINE_CUSTOMERS_FILE
  value: /etc/meterline/catalog/customers.yaml
{{- end -}}

{{/* An httpGet probe: GET a path of a named container port on the pod's address. */}}
{{- define "meterline.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end -}}
