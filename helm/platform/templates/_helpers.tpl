{{/*
Prefix of every object name: the release name unless fullnameOverride is set.
At most 40 characters, so that "<prefix>-postgresql-headless" and the
StatefulSets' controller-revision-hash labels stay within 63.
*/}}
{{- define "platform.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the pods of one component. Call with (dict "ctx" $ "component" "…"). */}}
{{- define "platform.selectorLabels" -}}
app.kubernetes.io/name: storeprov
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of every object. Call with (dict "ctx" $ "component" "…"). */}}
{{- define "platform.labels" -}}
{{ include "platform.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: storeprov
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
Labels of pod templates: the object labels without helm.sh/chart, so that a
chart bump alone does not restart pods. Call with (dict "ctx" $ "component" "…").
*/}}
{{- define "platform.podLabels" -}}
{{ include "platform.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: storeprov
{{- end -}}

{{/* Image of a storeprov service. Call with (dict "ctx" $ "service" "api"). */}}
{{- define "platform.serviceImage" -}}
{{- printf "%s/%s:%s" .ctx.Values.image.repository .service (.ctx.Values.image.tag | default .ctx.Chart.AppVersion) -}}
{{- end -}}

{{- define "platform.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{/*
Pod fields shared by every pod. Only the orchestrator talks to the
Kubernetes API and mounts a token. Call with
(dict "ctx" $ "serviceAccount" "<name or empty>" "token" <bool>).
*/}}
{{- define "platform.podDefaults" -}}
automountServiceAccountToken: {{ .token | default false }}
enableServiceLinks: false
{{- with .serviceAccount }}
serviceAccountName: {{ . }}
{{- end }}
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .ctx.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .ctx.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Spreads the replicas of a component over nodes; call it only when there is
more than one. Call with (dict "ctx" $ "component" "…").
*/}}
{{- define "platform.spread" -}}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "platform.selectorLabels" . | nindent 8 }}
{{- end -}}

{{/*
Pod securityContext for a non-root user; the service images run as 65532.
Call with (dict "uid" 65532).
*/}}
{{- define "platform.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container securityContext: Pod Security "restricted" compliant. */}}
{{- define "platform.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/*
Environment of every Go service: the Go runtime sized from the container's
limits, so that the garbage collector works before the OOM killer does.
Call with (dict "container" "api").
*/}}
{{- define "platform.goEnv" -}}
- name: GOMAXPROCS
  valueFrom:
    resourceFieldRef:
      containerName: {{ .container }}
      resource: limits.cpu
      divisor: "1"
- name: GOMEMLIMIT
  valueFrom:
    resourceFieldRef:
      containerName: {{ .container }}
      resource: limits.memory
      divisor: "1"
{{- end -}}

{{/* The NATS server every service connects to. */}}
{{- define "platform.natsURL" -}}
{{- if .Values.nats.external.url -}}
{{- .Values.nats.external.url -}}
{{- else -}}
{{- printf "nats://%s-nats:4222" (include "platform.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
The Secret holding the api's and the audit service's database URLs: the
generated one of the bundled PostgreSQL, or postgresql.external.existingSecret.
*/}}
{{- define "platform.databaseSecret" -}}
{{- if .Values.postgresql.enabled -}}
{{- printf "%s-postgresql" (include "platform.fullname" .) -}}
{{- else -}}
{{- required "postgresql.enabled is false: set postgresql.external.existingSecret to a Secret holding the database URLs (keys postgresql.external.apiKey and auditKey)" .Values.postgresql.external.existingSecret -}}
{{- end -}}
{{- end -}}

{{- define "platform.databaseKey" -}}
{{- if .ctx.Values.postgresql.enabled -}}
{{- printf "%s-database-url" .service -}}
{{- else -}}
{{- index .ctx.Values.postgresql.external (printf "%sKey" .service) -}}
{{- end -}}
{{- end -}}

{{/* Host of the dashboard. */}}
{{- define "platform.dashboardHost" -}}
{{- printf "dashboard.%s" .Values.domain -}}
{{- end -}}

{{/* Domain under which stores are served. */}}
{{- define "platform.storeDomain" -}}
{{- .Values.orchestrator.storeDomain | default .Values.domain -}}
{{- end -}}

{{/* URL of the dashboard, without a trailing slash. */}}
{{- define "platform.dashboardURL" -}}
{{- printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) (include "platform.dashboardHost" .) -}}
{{- end -}}

{{/* Claim storageClassName line, if any. */}}
{{- define "platform.storageClass" -}}
{{- if eq .Values.storageClass "-" -}}
storageClassName: ""
{{- else if .Values.storageClass -}}
storageClassName: {{ .Values.storageClass | quote }}
{{- end -}}
{{- end -}}

{{/*
The Secret holding each service's NATS password under its role's name (api,
orchestrator, audit): nats.auth.existingSecret, or the one the chart
generates for the bundled NATS. Empty for an external NATS without
nats.auth.existingSecret: the services connect without authentication.
*/}}
{{- define "platform.natsAuthSecret" -}}
{{- if .Values.nats.auth.existingSecret -}}
{{- .Values.nats.auth.existingSecret -}}
{{- else if not .Values.nats.external.url -}}
{{- printf "%s-nats-auth" (include "platform.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
STOREPROV_NATS_PASSWORD of a service, from platform.natsAuthSecret; nothing
when there is no such Secret. Call with (dict "ctx" $ "role" "api").
*/}}
{{- define "platform.natsPasswordEnv" -}}
{{- with include "platform.natsAuthSecret" .ctx }}
- name: STOREPROV_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.role }}
{{- end }}
{{- end -}}

{{/*
What a role may publish and subscribe to on the bundled NATS, in its
configuration syntax: {publish: {allow: […]}, subscribe: {allow: […]}}. It must
equal bus.Topology.Permissions in pkg/bus/roles.go, which documents why each
subject is there; helm/platform_test.go fails when they differ. Call with
(dict "ctx" $ "role" "api").
*/}}
{{- define "platform.natsPermissions" -}}
{{- $p := .ctx.Values.bus.prefix -}}
{{- $commands := printf "%s_COMMANDS" (upper $p) -}}
{{- $resync := printf "%s_RESYNC" (upper $p) -}}
{{- $events := printf "%s_EVENTS" (upper $p) -}}
{{- $pub := list -}}
{{- $sub := list -}}
{{- $consumers := list -}}
{{- if eq .role "orchestrator" -}}
{{- $pub = list (printf "%s.commands.>" $p) (printf "%s.resync.>" $p) (printf "%s.status.>" $p) (printf "%s.audit.orchestrator.>" $p) -}}
{{- range list $commands $resync $events -}}
{{- $pub = append (append $pub (printf "$JS.API.STREAM.CREATE.%s" .)) (printf "$JS.API.STREAM.UPDATE.%s" .) -}}
{{- end -}}
{{- $pub = concat $pub (list (printf "$JS.API.STREAM.INFO.%s" $commands) (printf "$JS.API.STREAM.MSG.GET.%s" $commands) "$JS.API.INFO") -}}
{{- range $bucket := list (printf "%s_LEASES" (upper $p)) (printf "%s_APPLIED" (upper $p)) -}}
{{- $pub = concat $pub (list
  (printf "$KV.%s.>" $bucket)
  (printf "$JS.API.STREAM.CREATE.KV_%s" $bucket)
  (printf "$JS.API.STREAM.UPDATE.KV_%s" $bucket)
  (printf "$JS.API.STREAM.INFO.KV_%s" $bucket)
  (printf "$JS.API.DIRECT.GET.KV_%s.>" $bucket)) -}}
{{- end -}}
{{- $consumers = list
  (dict "stream" $commands "name" "orchestrator" "create" (printf "$JS.API.CONSUMER.CREATE.%s.orchestrator" $commands))
  (dict "stream" $resync "name" "orchestrator-resync" "create" (printf "$JS.API.CONSUMER.CREATE.%s.orchestrator-resync" $resync)) -}}
{{- else if eq .role "api" -}}
{{- $pub = list (printf "%s.commands.>" $p) (printf "%s.resync.>" $p) (printf "%s.audit.api.>" $p) (printf "%s.changed.>" $p)
  (printf "$JS.API.STREAM.CREATE.%s" $commands) (printf "$JS.API.STREAM.CREATE.%s" $resync) (printf "$JS.API.STREAM.CREATE.%s" $events) -}}
{{- $sub = list (printf "%s.changed.>" $p) -}}
{{- $consumers = list (dict "stream" $events "name" "api-status" "create" (printf "$JS.API.CONSUMER.CREATE.%s.api-status.%s.status.>" $events $p)) -}}
{{- else if eq .role "audit" -}}
{{- $pub = list (printf "$JS.API.STREAM.CREATE.%s" $events) -}}
{{- $consumers = list (dict "stream" $events "name" "audit" "create" (printf "$JS.API.CONSUMER.CREATE.%s.audit.%s.audit.>" $events $p)) -}}
{{- else -}}
{{- fail (printf "platform.natsPermissions: unknown role %q" .role) -}}
{{- end -}}
{{- range $c := $consumers -}}
{{- $pub = concat $pub (list
  $c.create
  (printf "$JS.API.CONSUMER.INFO.%s.%s" $c.stream $c.name)
  (printf "$JS.API.CONSUMER.MSG.NEXT.%s.%s" $c.stream $c.name)
  (printf "$JS.ACK.%s.%s.>" $c.stream $c.name)
  (printf "$JS.ACK.*.*.%s.%s.>" $c.stream $c.name)) -}}
{{- end -}}
{{- $sub = append $sub (printf "_INBOX_%s_%s.>" $p .role) -}}
{{- $quoted := dict "publish" list "subscribe" list -}}
{{- range $pub }}{{ $_ := set $quoted "publish" (append $quoted.publish (printf "%q" .)) }}{{ end -}}
{{- range $sub }}{{ $_ := set $quoted "subscribe" (append $quoted.subscribe (printf "%q" .)) }}{{ end -}}
{{- printf "{publish: {allow: [%s]}, subscribe: {allow: [%s]}}" (join ", " $quoted.publish) (join ", " $quoted.subscribe) -}}
{{- end -}}

{{/* The bundled NATS server's configuration. */}}
{{- define "platform.natsConfig" -}}
# $POD_NAME is read from the environment: JetStream needs a stable name.
server_name: $POD_NAME
port: 4222
http_port: 8222
jetstream {
  store_dir: /data
  max_file_store: {{ .Values.nats.jetstream.maxFileStore }}
  max_memory_store: {{ .Values.nats.jetstream.maxMemoryStore }}
}
# Each service signs in as its role; the passwords are read from the
# environment ($API_PASSWORD…), which the Secret fills. Nobody else may
# connect.
authorization {
  users: [
    {{- range $role := list "api" "orchestrator" "audit" }}
    {
      user: {{ $role }}
      password: ${{ upper $role }}_PASSWORD
      permissions: {{ include "platform.natsPermissions" (dict "ctx" $ "role" $role) }}
    }
    {{- end }}
  ]
}
{{- end -}}
