{{/* Names: the release's, cut to what Kubernetes allows. */}}
{{- define "makeusrich.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries; `component` names the part. */}}
{{- define "makeusrich.labels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: makeusrich
app.kubernetes.io/component: {{ .component }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- define "makeusrich.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* repository:tag of (list $ .Values.x.image), the tag defaulting to the chart's appVersion. */}}
{{- define "makeusrich.image" -}}
{{- $image := index . 1 -}}
{{- printf "%s:%s" $image.repository ($image.tag | default (index . 0).Chart.AppVersion) -}}
{{- end -}}

{{/* The restricted Pod Security Standard, for every pod the chart makes. */}}
{{- define "makeusrich.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "makeusrich.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Where pairs live: the watched namespaces, or the release's own when every namespace is watched. */}}
{{- define "makeusrich.pairNamespaces" -}}
{{- if .Values.operator.watchNamespaces -}}
{{- join "," .Values.operator.watchNamespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{- define "makeusrich.s3Secret" -}}
{{- .Values.s3.existingSecret | default "makeusrich-s3" -}}
{{- end -}}

{{- define "makeusrich.storeUrl" -}}
{{- if .Values.s3.prefix -}}
{{- printf "s3://%s/%s" .Values.s3.bucket (trimAll "/" .Values.s3.prefix) -}}
{{- else -}}
{{- printf "s3://%s" .Values.s3.bucket -}}
{{- end -}}
{{- end -}}

{{/* S3 settings every process that reads the store gets (operator, dashboard); keys come from the Secret. */}}
{{- define "makeusrich.s3Env" -}}
- name: MAKEUSRICH_STORE
  value: {{ include "makeusrich.storeUrl" . | quote }}
{{- with include "makeusrich.s3Endpoint" . }}
- name: S3_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: S3_USE_HTTPS
  value: {{ ternary "1" "0" .Values.s3.useHttps | quote }}
- name: S3_VERIFY_TLS
  value: {{ ternary "1" "0" .Values.s3.verifySsl | quote }}
{{- with .Values.s3.region }}
- name: AWS_REGION
  value: {{ . | quote }}
{{- end }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ include "makeusrich.s3Secret" . }}, key: AWS_ACCESS_KEY_ID}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ include "makeusrich.s3Secret" . }}, key: AWS_SECRET_ACCESS_KEY}
{{- end -}}

{{/* The trainer pods' ServiceAccount: the one named, else the chart's own; empty (the namespace's default)
when the chart makes none and none is named. */}}
{{- define "makeusrich.trainerAccount" -}}
{{- if .Values.trainer.serviceAccount.name -}}
{{- .Values.trainer.serviceAccount.name -}}
{{- else if .Values.trainer.serviceAccount.create -}}
{{- printf "%s-trainer" (include "makeusrich.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The S3 endpoint: the bundled MinIO's Service, else s3.endpoint (empty: AWS). */}}
{{- define "makeusrich.s3Endpoint" -}}
{{- if .Values.minio.enabled -}}
{{- printf "http://%s-minio.%s.svc:9000" (include "makeusrich.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.s3.endpoint -}}
{{- end -}}
{{- end -}}
