{{/* Fixed names: the reconciler and the WorkflowTemplates refer to them, so one release per namespace. */}}
{{- define "capflow.reconcilerName" -}}capflow-reconciler{{- end }}
{{- define "capflow.executorServiceAccount" -}}{{ .Values.executor.serviceAccount.name | default "capflow-executor" }}{{- end }}

{{/* The image of the reconciler and of every workflow step. */}}
{{- define "capflow.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The image name workflow-templates/ is written with: the chart replaces it with capflow.image. */}}
{{- define "capflow.sourceImageRepository" -}}ghcr.io/capflow/capflow{{- end }}

{{- define "capflow.chart" -}}
{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "capflow.labels" -}}
helm.sh/chart: {{ include "capflow.chart" . }}
app.kubernetes.io/part-of: capflow
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of the reconciler's objects, beside capflow.labels. */}}
{{- define "capflow.reconcilerLabels" -}}
app.kubernetes.io/name: capflow
app.kubernetes.io/component: reconciler
{{- end }}

{{/* Selector labels of the reconciler pods. */}}
{{- define "capflow.reconcilerSelectorLabels" -}}
{{ include "capflow.reconcilerLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
