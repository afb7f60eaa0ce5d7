{{/*
A Flick Deployment: (dict "root" $ "component" NAME "spec" VALUES "args" LIST "autoscaled" BOOL).
"autoscaled": an HPA or a KEDA ScaledObject owns the replica count (none rendered here).
Transcode workers (component transcoder-worker) also get the scratch volume (spec.scratch) and
FLICK_TRANSCODER__WORK_DIR in it.
*/}}
{{- define "flick.deployment" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $spec := .spec }}
{{- $ctx := dict "root" $root "component" .component }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "flick.componentName" $ctx }}
  labels:
    {{- include "flick.componentLabels" $ctx | nindent 4 }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ $spec.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "flick.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "flick.selectorLabels" $ctx | nindent 8 }}
        app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
        service.istio.io/canonical-name: {{ include "flick.componentName" $ctx }}
        {{- with include "flick.istioPodLabels" $root }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "flick.configEnv" $root | sha256sum }}
        {{- with include "flick.istioPodAnnotations" (dict "root" $root "port" $spec.port) }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with $spec.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "flick.serviceAccountName" $ctx }}
      automountServiceAccountToken: {{ $v.serviceAccount.automountToken }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "flick.podSecurityContext" $root | nindent 8 }}
      terminationGracePeriodSeconds: {{ default $v.terminationGracePeriodSeconds $spec.terminationGracePeriodSeconds }}
      {{- if $v.topologySpread.enabled }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: {{ $v.topologySpread.topologyKey }}
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "flick.selectorLabels" $ctx | nindent 14 }}
      {{- end }}
      {{- with include "flick.scheduling" (dict "root" $root "spec" $spec) }}
      {{- . | nindent 6 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "flick.image" $root }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          ports:
            - name: http
              containerPort: {{ $spec.port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "flick.fullname" $root }}-config
          env:
            {{- include "flick.secretEnv" $root | nindent 12 }}
            {{- include "flick.meshEnv" $root | nindent 12 }}
            {{- if eq .component "accounts" }}
            - name: FLICK_ACCOUNTS__JWT_KEYS_DIR
              value: {{ $v.secrets.jwtKeys.mountPath | quote }}
            {{- end }}
            {{- /* dedicated workers transcode: none in the transcoder's own process */}}
            {{- if and (eq .component "transcoder") $v.worker.enabled (not (hasKey $spec.env "FLICK_TRANSCODER__WORKERS")) }}
            - name: FLICK_TRANSCODER__WORKERS
              value: "0"
            {{- end }}
            {{- /* workers transcode in the scratch volume */}}
            {{- if and (eq .component "transcoder-worker") (not (hasKey $spec.env "FLICK_TRANSCODER__WORK_DIR")) }}
            - name: FLICK_TRANSCODER__WORK_DIR
              value: {{ printf "%s/transcode" (trimSuffix "/" $spec.scratch.mountPath) | quote }}
            {{- end }}
            {{- range $k, $val := $spec.env }}
            - name: {{ $k }}
              value: {{ $val | quote }}
            {{- end }}
          {{- if or (not (hasKey $spec "probes")) $spec.probes.enabled }}
          {{- include "flick.probes" (dict "root" $root "probes" $v.probes) | nindent 10 }}
          {{- end }}
          {{- if gt (int $v.preStopSleepSeconds) 0 }}
          lifecycle:
            preStop:
              exec:
                command: ["sleep", "{{ $v.preStopSleepSeconds }}"]
          {{- end }}
          resources:
            {{- toYaml $spec.resources | nindent 12 }}
          securityContext:
            {{- include "flick.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if eq .component "transcoder-worker" }}
            - name: scratch
              mountPath: {{ $spec.scratch.mountPath }}
            {{- end }}
            {{- if eq .component "accounts" }}
            - name: jwt-keys
              mountPath: {{ $v.secrets.jwtKeys.mountPath }}
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: {{ $spec.tmpSizeLimit }}
        {{- if eq .component "transcoder-worker" }}
        - name: scratch
          emptyDir:
            {{- with $spec.scratch.medium }}
            medium: {{ . }}
            {{- end }}
            sizeLimit: {{ required "worker.scratch.sizeLimit is required" $spec.scratch.sizeLimit }}
        {{- end }}
        {{- if eq .component "accounts" }}
        - name: jwt-keys
          secret:
            secretName: {{ required "secrets.jwtKeys.name is required" $v.secrets.jwtKeys.name }}
            defaultMode: 0440
        {{- end }}
{{- end }}
