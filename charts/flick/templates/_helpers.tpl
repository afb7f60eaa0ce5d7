{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "flick.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. With release "flick" this is "flick", so objects are named
flick-accounts, flick-router, ...; with release "acme", acme-flick-accounts, ... Every name the
edge and Istio templates use (Services, ServiceAccounts, principals) comes from here.
*/}}
{{- define "flick.fullname" -}}
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

{{- define "flick.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels shared by every object. */}}
{{- define "flick.labels" -}}
helm.sh/chart: {{ include "flick.chart" . }}
app.kubernetes.io/name: {{ include "flick.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flick
{{- end }}

{{/* Selector labels of one component: (dict "root" $ "component" "accounts"). */}}
{{- define "flick.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flick.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* All labels of one component: (dict "root" $ "component" "accounts"). */}}
{{- define "flick.componentLabels" -}}
{{ include "flick.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Name of a component's objects (Deployment, Service, ServiceAccount): flick-accounts. */}}
{{- define "flick.componentName" -}}
{{- printf "%s-%s" (include "flick.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flick.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Non-secret configuration as a flat map of environment variables (FLICK_ prefix, `__` nests).
Rendered into the ConfigMap for Deployments and inline into the migrate hook Job (which runs
before the ConfigMap exists on first install).
*/}}
{{- define "flick.configEnv" -}}
FLICK_SERVER__HOST: "0.0.0.0"
{{- range $name, $svc := .Values.services }}
FLICK_SERVER__PORTS__{{ upper $name }}: {{ $svc.port | quote }}
{{- end }}
# only embedded fallbacks write here; /tmp is the pod's writable emptyDir
FLICK_DATA_DIR: "/tmp/flick"
# the migrate hook Job applies migrations before the services roll out
FLICK_DATABASE__MIGRATE_ON_START: "false"
FLICK_GRAPHQL__GRAPHIQL: {{ .Values.config.graphiql | quote }}
FLICK_GRAPHQL__INTROSPECTION: {{ .Values.config.introspection | quote }}
FLICK_TELEMETRY__LOG_FORMAT: {{ .Values.config.logFormat | quote }}
# gRPC between services (media → transcoder, transcoder → accounts, recommender → media)
{{- range $name, $svc := .Values.services }}
{{- if $svc.enabled }}
FLICK_ENDPOINTS__{{ upper $name }}: {{ include "flick.serviceUrl" (dict "root" $ "component" $name "port" $svc.port) | quote }}
{{- end }}
{{- end }}
{{- with .Values.config.publicBaseUrl }}
FLICK_TRANSCODER__PUBLIC_BASE_URL: {{ . | quote }}
{{- end }}
FLICK_TRANSCODER__MAX_UPLOAD_BYTES: {{ .Values.config.transcoder.maxUploadBytes | int64 | quote }}
FLICK_TRANSCODER__USER_QUOTA_BYTES: {{ .Values.config.transcoder.userQuotaBytes | int64 | quote }}
# transcode workers' scratch space, on the pod's /tmp emptyDir
FLICK_TRANSCODER__WORK_DIR: "/tmp/transcode"
{{- with include "flick.otlpEndpoint" . }}
FLICK_TELEMETRY__OTLP_ENDPOINT: {{ . | quote }}
FLICK_TELEMETRY__TRACE_SAMPLE_RATIO: {{ $.Values.config.traceSampleRatio | quote }}
{{- end }}
FLICK_STORAGE__URL: {{ required "config.storage.url is required (s3://bucket)" .Values.config.storage.url | quote }}
{{- with .Values.config.storage.s3.endpoint }}
FLICK_STORAGE__S3__ENDPOINT: {{ . | quote }}
{{- end }}
{{- with .Values.config.storage.s3.region }}
FLICK_STORAGE__S3__REGION: {{ . | quote }}
{{- end }}
RUST_LOG: {{ .Values.config.rustLog | quote }}
{{- range $k, $v := .Values.config.extraEnv }}
{{ $k }}: {{ $v | quote }}
{{- end }}
{{- end }}

{{/* In-cluster URL of a component's Service: (dict "root" $ "component" NAME "port" PORT). */}}
{{- define "flick.serviceUrl" -}}
{{- printf "http://%s.%s.svc.cluster.local:%d" (include "flick.componentName" .) .root.Release.Namespace (int .port) }}
{{- end }}

{{/* The Secret holding the mesh secret: an existing one, or the chart's <fullname>-mesh. */}}
{{- define "flick.meshSecretName" -}}
{{- default (printf "%s-mesh" (include "flick.fullname" .)) .Values.identity.existingSecret }}
{{- end }}

{{- define "flick.meshSecretKey" -}}
{{- if .Values.identity.existingSecret }}{{ .Values.identity.existingSecretKey }}{{ else }}mesh-secret{{ end }}
{{- end }}

{{/*
The mesh secret's value, for the chart's Secret and for the edge (Traefik's strip-identity
middleware, the Istio gateway's VirtualService), which cannot read a Secret and must carry the
value itself. In order: identity.meshSecret; the value the Secret already holds in the cluster
(`lookup`, so upgrades keep it; with identity.existingSecret, that Secret's key); else, for the
chart's own Secret, a random one. Computed once per render and kept in .Values, so the Secret
and the edge get the same value even when it is random (`helm template`, first install).
*/}}
{{- define "flick.meshSecretValue" -}}
{{- if not (hasKey .Values "flickMeshSecretValue") }}
{{- $value := .Values.identity.meshSecret }}
{{- if not $value }}
{{- $name := include "flick.meshSecretName" . }}
{{- $key := include "flick.meshSecretKey" . }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $name }}
{{- if and $existing $existing.data (hasKey $existing.data $key) }}
{{- $value = index $existing.data $key | b64dec }}
{{- else if .Values.identity.existingSecret }}
{{- fail (printf "the edge (edge.enabled, kind %s) carries the mesh secret in its own objects and reads it at render time from Secret %s (key %s) in namespace %s, which was not found (helm template and --dry-run see no cluster). Create that Secret first, or set identity.meshSecret, or leave identity.existingSecret empty (the chart's Secret), or set edge.enabled=false and configure your own edge (docs/kubernetes.md)" .Values.edge.kind $name $key .Release.Namespace) }}
{{- else }}
{{- $value = randAlphaNum 48 }}
{{- end }}
{{- end }}
{{- $_ := set .Values "flickMeshSecretValue" $value }}
{{- end }}
{{- index .Values "flickMeshSecretValue" }}
{{- end }}

{{/* The ServiceAccount a component's pods run as: (dict "root" $ "component" NAME). */}}
{{- define "flick.serviceAccountName" -}}
{{- if .root.Values.serviceAccount.create }}{{ include "flick.componentName" . }}{{ else }}default{{ end }}
{{- end }}

{{/* An Istio principal: (dict "root" $ "namespace" NS "name" SA). */}}
{{- define "flick.principal" -}}
{{- printf "%s/ns/%s/sa/%s" .root.Values.istio.trustDomain .namespace .name }}
{{- end }}

{{/* In-cluster host name of a component's Service: (dict "root" $ "component" NAME). */}}
{{- define "flick.serviceHost" -}}
{{- printf "%s.%s.svc.cluster.local" (include "flick.componentName" .) .root.Release.Namespace }}
{{- end }}

{{/*
Pod annotations for the Istio sidecar (istio.enabled): start the application only once the
proxy is ready (its first outbound calls would fail otherwise), and metrics merging: the
sidecar injector rewrites the prometheus.io annotations to the agent's port 15020
(/stats/prometheus), which serves the application's /metrics (fetched over localhost) merged
with Envoy's, in plain HTTP outside mTLS, so Prometheus needs no Istio certificates under STRICT.
(dict "root" $ "port" PORT).
*/}}
{{- define "flick.istioPodAnnotations" -}}
{{- $i := .root.Values.istio }}
{{- if $i.enabled }}
{{- if $i.holdApplicationUntilProxyStarts }}
proxy.istio.io/config: '{"holdApplicationUntilProxyStarts": true}'
{{- end }}
{{- if $i.mergeMetrics }}
prometheus.istio.io/merge-metrics: "true"
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}
{{- end }}

{{/* Pod labels for the Istio sidecar (istio.enabled + istio.injectSidecar). */}}
{{- define "flick.istioPodLabels" -}}
{{- if and .Values.istio.enabled .Values.istio.injectSidecar }}
sidecar.istio.io/inject: "true"
{{- end }}
{{- end }}

{{/* FLICK_IDENTITY__MESH_SECRET for every Flick Deployment (not the migrate hook: it runs
before the chart's Secret exists and needs no identity). */}}
{{- define "flick.meshEnv" -}}
- name: FLICK_IDENTITY__MESH_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "flick.meshSecretName" . }}
      key: {{ include "flick.meshSecretKey" . }}
{{- end }}

{{/* Environment read from existing Secrets (never rendered as values). */}}
{{- define "flick.secretEnv" -}}
{{- $s := .Values.secrets }}
- name: FLICK_DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.database.name is required" $s.database.name }}
      key: {{ $s.database.key }}
- name: FLICK_DOCUMENTS__URL
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.documents.name is required" $s.documents.name }}
      key: {{ $s.documents.key }}
- name: FLICK_CACHE__URL
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.cache.name is required" $s.cache.name }}
      key: {{ $s.cache.key }}
- name: FLICK_BUS__URL
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.bus.name is required" $s.bus.name }}
      key: {{ $s.bus.key }}
{{- if $s.s3.name }}
- name: FLICK_STORAGE__S3__ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ $s.s3.name }}
      key: {{ $s.s3.accessKeyIdKey }}
- name: FLICK_STORAGE__S3__SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $s.s3.name }}
      key: {{ $s.s3.secretAccessKeyKey }}
{{- end }}
{{- end }}

{{/* Pod-level security context shared by Flick pods. */}}
{{- define "flick.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{/* Container-level security context shared by Flick containers. */}}
{{- define "flick.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* HTTP probes on the one port: (dict "root" $ "probes" .Values.probes "port" "http"). */}}
{{- define "flick.probes" -}}
{{- $p := .probes }}
{{- with $p.startup }}
startupProbe:
  httpGet:
    path: {{ .path }}
    port: http
  periodSeconds: {{ .periodSeconds }}
  timeoutSeconds: {{ .timeoutSeconds }}
  failureThreshold: {{ .failureThreshold }}
{{- end }}
{{- with $p.liveness }}
livenessProbe:
  httpGet:
    path: {{ .path }}
    port: http
  periodSeconds: {{ .periodSeconds }}
  timeoutSeconds: {{ .timeoutSeconds }}
  failureThreshold: {{ .failureThreshold }}
{{- end }}
{{- with $p.readiness }}
readinessProbe:
  httpGet:
    path: {{ .path }}
    port: http
  periodSeconds: {{ .periodSeconds }}
  timeoutSeconds: {{ .timeoutSeconds }}
  failureThreshold: {{ .failureThreshold }}
{{- end }}
{{- end }}

{{/*
The edge's principals (Istio policies), one per line: Traefik's or the ingress gateway's
ServiceAccount (edge.enabled), plus istio.extraEdgeServiceAccounts.
*/}}
{{- define "flick.edgePrincipals" -}}
{{- $e := .Values.edge }}
{{- $sas := list }}
{{- if $e.enabled }}
{{- if eq $e.kind "traefik" }}
{{- $sas = append $sas $e.traefik.serviceAccount }}
{{- else }}
{{- $sas = append $sas (dict "namespace" $e.istio.gateway.namespace "name" $e.istio.gateway.serviceAccount) }}
{{- end }}
{{- end }}
{{- range .Values.istio.extraEdgeServiceAccounts }}{{ $sas = append $sas . }}{{ end }}
{{- range $sas }}
{{ include "flick.principal" (dict "root" $ "namespace" .namespace "name" .name) }}
{{- end }}
{{- end }}

{{/* Prometheus's principals (istio.prometheusServiceAccounts), one per line. */}}
{{- define "flick.prometheusPrincipals" -}}
{{- range .Values.istio.prometheusServiceAccounts }}
{{ include "flick.principal" (dict "root" $ "namespace" .namespace "name" .name) }}
{{- end }}
{{- end }}

{{/*
Traefik route match for the edge: (dict "root" $ "rule" RULE); with edge.host, only that host.
*/}}
{{- define "flick.edgeMatch" -}}
{{- with .root.Values.edge.host }}{{ printf "Host(`%s`) && (%s)" . $.rule }}{{ else }}{{ .rule }}{{ end }}
{{- end }}

{{/*
nodeSelector, tolerations and affinity of a pod: each the component's own when set, else the
global one (.Values.nodeSelector, .tolerations, .affinity): (dict "root" $ "spec" COMPONENT_VALUES).
*/}}
{{- define "flick.scheduling" -}}
{{- $v := .root.Values }}
{{- $s := .spec | default dict }}
{{- with default $v.nodeSelector $s.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with default $v.tolerations $s.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with default $v.affinity $s.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Whether the workers' replica count is owned by an autoscaler (CPU HPA or KEDA). */}}
{{- define "flick.workerAutoscaled" -}}
{{- if or .Values.worker.autoscaling.enabled .Values.worker.keda.enabled }}true{{ end }}
{{- end }}

{{/*
The edge's pods as NetworkPolicy peers: networkPolicy.edgePeers, else derived from edge.kind
(Traefik's pods in its ServiceAccount's namespace, or the Istio ingress gateway's pods).
Empty when the edge is off and no peers are given.
*/}}
{{- define "flick.edgePeers" -}}
{{- $np := .Values.networkPolicy }}
{{- $e := .Values.edge }}
{{- if $np.edgePeers }}
{{- toYaml $np.edgePeers }}
{{- else if and $e.enabled (eq $e.kind "traefik") }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ $e.traefik.serviceAccount.namespace }}
  podSelector:
    matchLabels:
      app.kubernetes.io/name: traefik
{{- else if $e.enabled }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ $e.istio.gateway.namespace }}
  podSelector:
    matchLabels:
      {{- toYaml $e.istio.gateway.selector | nindent 6 }}
{{- end }}
{{- end }}

{{/* The edge's in-cluster URL for the helm test: tests.edgeUrl, else the edge kind's usual Service. */}}
{{- define "flick.testEdgeUrl" -}}
{{- $e := .Values.edge }}
{{- if .Values.tests.edgeUrl }}{{ trimSuffix "/" .Values.tests.edgeUrl }}
{{- else if eq $e.kind "traefik" }}{{ printf "http://traefik.%s.svc.cluster.local" $e.traefik.serviceAccount.namespace }}
{{- else }}{{ printf "http://istio-ingressgateway.%s.svc.cluster.local" $e.istio.gateway.namespace }}
{{- end }}
{{- end }}

{{/*
Where traces go: config.otlpEndpoint, else the chart's own collector (otelCollector.enabled),
else nowhere (empty).
*/}}
{{- define "flick.otlpEndpoint" -}}
{{- if .Values.config.otlpEndpoint }}
{{- .Values.config.otlpEndpoint }}
{{- else if .Values.otelCollector.enabled }}
{{- printf "http://%s-otel-collector.%s.svc.cluster.local:4317" (include "flick.fullname" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{/*
The Service the edge sends the web app's routes to, as JSON {"name", "host", "port"}: the
chart's own (<fullname>-web on webapp.port) or webapp.existingService. Call only with
webapp.enabled.
*/}}
{{- define "flick.webappService" -}}
{{- $w := .Values.webapp }}
{{- $name := include "flick.componentName" (dict "root" . "component" "web") }}
{{- $port := int $w.port }}
{{- if $w.existingService.name }}
{{- $name = $w.existingService.name }}
{{- $port = int $w.existingService.port }}
{{- end }}
{{- toJson (dict "name" $name "host" (printf "%s.%s.svc.cluster.local" $name .Release.Namespace) "port" $port) }}
{{- end }}
