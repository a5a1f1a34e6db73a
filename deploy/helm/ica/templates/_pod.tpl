{{/*
The pod both workloads run: the single-replica StatefulSet on a disk (the
embedded ledger) and the Deployment of replicas on PostgreSQL
(database.existingSecret). Only the data volume, the database settings and
the spreading differ.
*/}}

{{/* True (non-empty) when the ledger is in PostgreSQL. */}}
{{- define "ica.database" -}}
{{- if .Values.database.existingSecret }}true{{ end }}
{{- end }}

{{/*
The database settings, from database.existingSecret. The URL is required;
the password and the Entra settings are optional keys of the Secret, unless
the values set the Entra ones.
*/}}
{{- define "ica.databaseEnv" -}}
{{- $secret := .Values.database.existingSecret }}
- name: ICA_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: ICA_DATABASE_URL
- name: ICA_DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: ICA_DATABASE_PASSWORD
      optional: true
{{- if .Values.database.entra }}
- name: ICA_DATABASE_ENTRA
  value: "true"
{{- else }}
- name: ICA_DATABASE_ENTRA
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: ICA_DATABASE_ENTRA
      optional: true
{{- end }}
{{- if .Values.database.entraClientID }}
- name: ICA_DATABASE_ENTRA_CLIENT_ID
  value: {{ .Values.database.entraClientID | quote }}
{{- else }}
- name: ICA_DATABASE_ENTRA_CLIENT_ID
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: ICA_DATABASE_ENTRA_CLIENT_ID
      optional: true
{{- end }}
- name: ICA_DATABASE_MAX_CONNS
  value: {{ .Values.database.maxConns | quote }}
{{- end }}

{{/*
Refuse what cannot run: replicas sharing a ledger must sign with the same
keys, so with a database the keys come from the Secret (ica serve refuses to
start without them).
*/}}
{{- define "ica.checkDatabase" -}}
{{- if include "ica.database" . }}
{{- if and (not .Values.existingSecret) (or (not .Values.secrets.ICA_SIGNING_KEY) (not .Values.secrets.ICA_ACTION_SECRET)) }}
{{- fail "database.existingSecret needs ICA_SIGNING_KEY and ICA_ACTION_SECRET from a Secret: every replica signs with the same keys (set existingSecret, or secrets.ICA_SIGNING_KEY and secrets.ICA_ACTION_SECRET)" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (lt (int .Values.replicaCount) 2) }}
{{- fail "replicaCount must be at least 2 with podDisruptionBudget.enabled: with one replica, minAvailable 1 blocks every node drain" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "ica.podTemplate" -}}
{{- $db := include "ica.database" . -}}
metadata:
  labels:
    {{- include "ica.podLabels" . | nindent 4 }}
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- if not .Values.existingSecret }}
    {{- /* The values, not the rendered Secret: a generated signing key must not roll the pods at every upgrade. */}}
    checksum/secret: {{ toJson .Values.secrets | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "ica.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.workloadIdentity }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: ica
      image: {{ include "ica.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["serve", "--config", "/etc/ica/ica.yaml"]
      ports:
        - name: http
          containerPort: {{ .Values.containerPort }}
          protocol: TCP
        - name: metrics
          containerPort: {{ .Values.metricsPort }}
          protocol: TCP
        {{- if .Values.callbacks.separatePort }}
        - name: callbacks
          containerPort: {{ .Values.callbacks.containerPort }}
          protocol: TCP
        {{- end }}
      env:
        - name: ICA_ADDR
          value: {{ printf "0.0.0.0:%d" (int .Values.containerPort) | quote }}
        # /metrics has its own listener on the pod's IP (not 0.0.0.0:
        # nothing on the pod's loopback needs it), apart from the public one.
        - name: POD_IP
          valueFrom:
            fieldRef:
              fieldPath: status.podIP
        - name: ICA_METRICS_ADDR
          value: {{ printf "$(POD_IP):%d" (int .Values.metricsPort) | quote }}
        {{- if .Values.callbacks.separatePort }}
        - name: ICA_CALLBACK_ADDR
          value: {{ printf "0.0.0.0:%d" (int .Values.callbacks.containerPort) | quote }}
        {{- end }}
        {{- with .Values.callbacks.allowedCIDRs }}
        - name: ICA_CALLBACK_ALLOWED_CIDRS
          value: {{ join "," . | quote }}
        {{- end }}
        - name: ICA_DATA_DIR
          value: /data
        {{- with .Values.publicURL }}
        - name: ICA_PUBLIC_URL
          value: {{ . | quote }}
        {{- end }}
        {{- with .Values.blob.accountURL }}
        - name: ICA_BLOB_ACCOUNT_URL
          value: {{ . | quote }}
        {{- end }}
        {{- range $k, $v := .Values.env }}
        - name: {{ $k }}
          value: {{ $v | quote }}
        {{- end }}
        {{- if $db }}
        {{- include "ica.databaseEnv" . | trim | nindent 8 }}
        {{- end }}
        {{- include "ica.secretEnv" . | trim | nindent 8 }}
      startupProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: {{ .Values.probes.startup.periodSeconds }}
        failureThreshold: {{ .Values.probes.startup.failureThreshold }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
        timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
        failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
        timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
        failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
      {{- if and $db (gt (int .Values.preStopSleepSeconds) 0) (semverCompare ">=1.30-0" .Capabilities.KubeVersion.Version) }}
      # Endpoints drop a terminating pod a moment after it is told to stop:
      # keep serving meanwhile, so a rollout refuses no request.
      lifecycle:
        preStop:
          sleep:
            seconds: {{ .Values.preStopSleepSeconds }}
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: data
          mountPath: /data
        - name: config
          mountPath: /etc/ica
          readOnly: true
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: config
      configMap:
        name: {{ include "ica.fullname" . }}-config
    - name: tmp
      emptyDir:
        sizeLimit: 1Gi
    {{- if $db }}
    # The ledger is in the database: /data holds only this replica's admin socket.
    - name: data
      emptyDir:
        sizeLimit: 64Mi
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if $db }}
  # Spread over nodes and zones. Only nodes a pod may go to count (a
  # cordoned node being drained is not a domain to balance), and only this
  # revision's pods, so a rollout's surge pod is placed as the steady state
  # will be.
  topologySpreadConstraints:
    {{- if .Values.topologySpreadConstraints }}
    {{- toYaml .Values.topologySpreadConstraints | nindent 4 }}
    {{- else }}
    {{- range $key, $when := dict "topology.kubernetes.io/zone" .Values.topologySpread.zones "kubernetes.io/hostname" .Values.topologySpread.nodes }}
    - topologyKey: {{ $key }}
      maxSkew: 1
      whenUnsatisfiable: {{ $when }}
      nodeAffinityPolicy: Honor
      nodeTaintsPolicy: Honor
      matchLabelKeys: [pod-template-hash]
      labelSelector:
        matchLabels:
          {{- include "ica.selectorLabels" $ | nindent 10 }}
    {{- end }}
    {{- end }}
  {{- end }}
{{- end }}
