{{/* Chart name. */}}
{{- define "ica.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-ica unless the release name already says ica. */}}
{{- define "ica.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ica.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "ica.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ica.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ica.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ica.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ica.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding tokens and keys: the operator's, or the chart's. */}}
{{- define "ica.secretName" -}}
{{- default (printf "%s-secrets" (include "ica.fullname" .)) .Values.existingSecret }}
{{- end }}

{{- define "ica.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Every secret ICA reads, as env entries from the Secret (never inlined). The
signing key is never optional: a key generated beside the ledger, on its
volume, could be read and used by whoever can write the ledger, so the pod
does not start without the key in the Secret. With a database the action
secret is required too: replicas share one ledger and must sign alike
(CreateContainerConfigError names the missing key).
*/}}
{{- define "ica.secretEnv" -}}
{{- $secret := include "ica.secretName" . }}
{{- $required := list "ICA_SIGNING_KEY" }}
{{- if include "ica.database" . }}
{{- $required = list "ICA_ACTION_SECRET" "ICA_SIGNING_KEY" }}
{{- end }}
{{- range $key := list "ICA_PIPELINE_TOKENS" "ICA_BREAKGLASS_TOKENS" "ICA_ADMIN_TOKENS" "ICA_MATTERMOST_TOKEN" "ICA_SLASH_TOKENS" "ICA_ALERT_TOKEN" "ICA_PAGERDUTY_ROUTING_KEY" "ICA_ACTION_SECRET" "ICA_SIGNING_KEY" "ICA_BLOB_CONNECTION_STRING" }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
      optional: {{ not (has $key $required) }}
{{- end }}
{{- end }}

{{/* The signing key of a chart-made Secret: the value given, else the one
the Secret already holds (lookup), else a new random one (32 bytes, hex). */}}
{{- define "ica.signingKey" -}}
{{- if .Values.secrets.ICA_SIGNING_KEY }}
{{- .Values.secrets.ICA_SIGNING_KEY }}
{{- else }}
{{- $old := lookup "v1" "Secret" .Release.Namespace (include "ica.secretName" .) }}
{{- if and $old $old.data (hasKey $old.data "ICA_SIGNING_KEY") }}
{{- index $old.data "ICA_SIGNING_KEY" | b64dec }}
{{- else }}
{{- randAlphaNum 64 | sha256sum }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ica.podLabels" -}}
{{ include "ica.selectorLabels" . }}
{{- if .Values.workloadIdentity }}
azure.workload.identity/use: "true"
{{- end }}
{{- with .Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}
