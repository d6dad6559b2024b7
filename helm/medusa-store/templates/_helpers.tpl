{{/*
Prefix of every object name: the release name unless fullnameOverride is set.
At most 40 characters, so that "<prefix>-postgresql-headless" and the
StatefulSet's controller-revision-hash label stay within 63.
*/}}
{{- define "medusa-store.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the pods of one component. Call with (dict "ctx" $ "component" "…"). */}}
{{- define "medusa-store.selectorLabels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of every object. Call with (dict "ctx" $ "component" "…"). */}}
{{- define "medusa-store.labels" -}}
{{ include "medusa-store.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: storeprov
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
storeprov.dev/store-id: {{ .ctx.Values.storeId | quote }}
{{- end -}}

{{/*
Labels of pod templates: the object labels without helm.sh/chart (a chart
bump alone must not restart pods), plus storeprov.dev/tier, which the
namespace's NetworkPolicies select on: "web" may be reached from the ingress
controller and may reach the database tier and the internet; "database" may
be reached from "web" only. Call with (dict "ctx" $ "component" "…" "tier" "…").
*/}}
{{- define "medusa-store.podLabels" -}}
{{ include "medusa-store.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: storeprov
storeprov.dev/store-id: {{ .ctx.Values.storeId | quote }}
storeprov.dev/tier: {{ .tier }}
{{- end -}}

{{/* Host name of the store. */}}
{{- define "medusa-store.host" -}}
{{- printf "store-%s.%s" .Values.storeId .Values.baseDomain -}}
{{- end -}}

{{/* Public URL of the store, without a trailing slash. */}}
{{- define "medusa-store.url" -}}
{{- $scheme := .Values.ingress.scheme | default (ternary "https" "http" .Values.ingress.tls.enabled) -}}
{{- printf "%s://%s" $scheme (include "medusa-store.host" .) -}}
{{- end -}}

{{/*
envText renders text as the value of a container's env var, or as an element
of its command or args, so that the container gets it exactly as written. The
kubelet expands those: "$(NAME)" becomes the value of an env var NAME declared
before (a Secret's key, say) and "$$" becomes "$". Every "$" is doubled, so
that nothing in the text is ever expanded, and the result is quoted for YAML.
Use it for every such value that comes from values or the store (the title,
the store's settings), never for the platform's own "$(VAR)" references.
Call with the text: {{ include "medusa-store.envText" .Values.title }}.
*/}}
{{- define "medusa-store.envText" -}}
{{- toString . | replace "$" "$$" | quote -}}
{{- end -}}

{{- define "medusa-store.title" -}}
{{- .Values.title | default (printf "Store %s" .Values.storeId) -}}
{{- end -}}

{{/* Pod fields shared by every pod: no API token, no service-link env vars. */}}
{{- define "medusa-store.podDefaults" -}}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Pod securityContext for a non-root user. The images used here run as:
postgres 999 (postgres), redis 999 (redis), node 1000 (medusa.runAsUser).
Call with (dict "uid" 999).
*/}}
{{- define "medusa-store.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container securityContext: Pod Security "restricted" compliant. */}}
{{- define "medusa-store.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "medusa-store.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{/*
libpq environment of the psql containers (PostgreSQL image) that wait for the
database and record or check migrations.
*/}}
{{- define "medusa-store.pgEnv" -}}
- name: PGHOST
  value: {{ include "medusa-store.envText" (printf "%s-postgresql" (include "medusa-store.fullname" .)) }}
- name: PGPORT
  value: "5432"
- name: PGCONNECT_TIMEOUT
  value: "5"
- name: PGDATABASE
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.database }}
      key: database
- name: PGUSER
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.database }}
      key: username
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.database }}
      key: password
- name: MEDUSA_IMAGE
  value: {{ include "medusa-store.envText" (include "medusa-store.image" .Values.medusa.image) }}
{{- end -}}

{{/*
Environment of every Medusa process (server, migrations, admin user).

Connection strings are assembled by the kubelet from Secret keys through
"$(VAR)" references to variables defined earlier in the list: nothing secret
is in the pod spec. The orchestrator generates passwords from base32
characters, which need no escaping in a URL.

JWT_SECRET and COOKIE_SECRET must be stable and equal in every replica, and
the chart may not invent secrets: both are derived from the root-password key
of the database Secret (unused by PostgreSQL, whose superuser is the database
owner) with distinct prefixes. Rotating root-password signs every user out.
*/}}
{{- define "medusa-store.medusaEnv" -}}
{{- $fullname := include "medusa-store.fullname" . -}}
{{- $url := include "medusa-store.url" . -}}
- name: DB_USER
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.database }}
      key: username
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.database }}
      key: password
- name: DB_NAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.database }}
      key: database
- name: DATABASE_URL
  value: {{ printf "postgres://$(DB_USER):$(DB_PASSWORD)@%s-postgresql:5432/$(DB_NAME)" $fullname | quote }}
- name: REDIS_URL
  value: {{ printf "redis://:$(DB_PASSWORD)@%s-redis:6379" $fullname | quote }}
- name: STOREPROV_KEY_SEED
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.database }}
      key: root-password
- name: JWT_SECRET
  value: "jwt:$(STOREPROV_KEY_SEED)"
- name: COOKIE_SECRET
  value: "cookie:$(STOREPROV_KEY_SEED)"
- name: NODE_ENV
  value: production
- name: PORT
  value: "9000"
- name: MEDUSA_WORKER_MODE
  value: {{ include "medusa-store.envText" .Values.medusa.workerMode }}
- name: MEDUSA_BACKEND_URL
  value: {{ include "medusa-store.envText" $url }}
- name: STORE_CORS
  value: {{ include "medusa-store.envText" $url }}
- name: ADMIN_CORS
  value: {{ include "medusa-store.envText" $url }}
- name: AUTH_CORS
  value: {{ include "medusa-store.envText" $url }}
# Medusa marks its session cookie Secure in production; browsers drop it on
# plain http, so the admin could not sign in on a store without TLS.
- name: MEDUSA_COOKIE_SECURE
  value: {{ ternary "true" "false" (hasPrefix "https://" $url) | quote }}
- name: MEDUSA_DISABLE_TELEMETRY
  value: "true"
- name: HOME
  value: /tmp
- name: NPM_CONFIG_CACHE
  value: /tmp/.npm
- name: NPM_CONFIG_UPDATE_NOTIFIER
  value: "false"
{{- with .Values.medusa.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Image, resources and securityContext of a psql container (PostgreSQL image). */}}
{{- define "medusa-store.dbClientContainer" -}}
image: {{ include "medusa-store.image" .Values.postgresql.image | quote }}
imagePullPolicy: {{ .Values.postgresql.image.pullPolicy }}
resources:
  {{- toYaml .Values.dbClient.resources | nindent 2 }}
securityContext:
  {{- include "medusa-store.containerSecurityContext" . | nindent 2 }}
  # postgres (999) whatever the pod's user: libpq and the image expect it.
  runAsUser: 999
  runAsGroup: 999
{{- end -}}

{{/*
Title of the publishable API key the seed creates and the order check looks
up through the admin API. Not a credential: a publishable key is public
(storefronts ship it to browsers).
*/}}
{{- define "medusa-store.publishableKeyTitle" -}}
storeprov
{{- end -}}

{{/* Environment of the seed (setup Job): the store settings of setup.*. */}}
{{- define "medusa-store.setupEnv" -}}
- name: STORE_TITLE
  value: {{ include "medusa-store.envText" (include "medusa-store.title" .) }}
- name: STORE_CURRENCY
  value: {{ include "medusa-store.envText" (lower .Values.setup.currency) }}
- name: STORE_COUNTRIES
  value: {{ include "medusa-store.envText" (join "," .Values.setup.countries | lower) }}
- name: PUBLISHABLE_KEY_TITLE
  value: {{ include "medusa-store.envText" (include "medusa-store.publishableKeyTitle" .) }}
- name: PRODUCT_NAME
  value: {{ include "medusa-store.envText" .Values.setup.product.name }}
- name: PRODUCT_SKU
  value: {{ include "medusa-store.envText" .Values.setup.product.sku }}
- name: PRODUCT_PRICE
  value: {{ include "medusa-store.envText" .Values.setup.product.price }}
- name: PRODUCT_DESCRIPTION
  value: {{ include "medusa-store.envText" .Values.setup.product.description }}
{{- end -}}

{{/* The setup Job's step that creates the admin user unless check-admin found it. */}}
{{- define "medusa-store.adminUserContainer" -}}
- name: admin-user
  image: {{ include "medusa-store.image" .Values.medusa.image | quote }}
  imagePullPolicy: {{ .Values.medusa.image.pullPolicy }}
  command: ["/bin/sh", "-c"]
  args:
    - |
      if [ -e /state/admin-exists ]; then
        echo "the admin user ${ADMIN_EMAIL} exists; nothing to do"
        exit 0
      fi
      exec npx medusa user -e "${ADMIN_EMAIL}" -p "${ADMIN_PASSWORD}"
  env:
    {{- include "medusa-store.medusaEnv" . | nindent 4 }}
    - name: ADMIN_EMAIL
      valueFrom:
        secretKeyRef:
          name: {{ .Values.existingSecret.admin }}
          key: email
    - name: ADMIN_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ .Values.existingSecret.admin }}
          key: password
  resources:
    {{- toYaml .Values.adminUser.resources | nindent 4 }}
  securityContext:
    {{- include "medusa-store.containerSecurityContext" . | nindent 4 }}
  volumeMounts:
    - name: state
      mountPath: /state
      readOnly: true
    - name: tmp
      mountPath: /tmp
{{- end -}}
