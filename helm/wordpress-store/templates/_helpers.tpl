{{/*
Prefix of every object name: the release name unless fullnameOverride is set.
At most 40 characters, so that "<prefix>-mariadb-headless" and the
StatefulSet's controller-revision-hash label stay within 63.
*/}}
{{- define "wordpress-store.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the pods of one component. Call with (dict "ctx" $ "component" "…"). */}}
{{- define "wordpress-store.selectorLabels" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of every object. Call with (dict "ctx" $ "component" "…"). */}}
{{- define "wordpress-store.labels" -}}
{{ include "wordpress-store.selectorLabels" . }}
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
{{- define "wordpress-store.podLabels" -}}
{{ include "wordpress-store.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: storeprov
storeprov.dev/store-id: {{ .ctx.Values.storeId | quote }}
storeprov.dev/tier: {{ .tier }}
{{- end -}}

{{/* Host name of the store. */}}
{{- define "wordpress-store.host" -}}
{{- printf "store-%s.%s" .Values.storeId .Values.baseDomain -}}
{{- end -}}

{{/* Public URL of the store, without a trailing slash. */}}
{{- define "wordpress-store.url" -}}
{{- $scheme := .Values.ingress.scheme | default (ternary "https" "http" .Values.ingress.tls.enabled) -}}
{{- printf "%s://%s" $scheme (include "wordpress-store.host" .) -}}
{{- end -}}

{{/*
envText renders text as the value of a container's env var, or as an element
of its command or args, so that the container gets it exactly as written. The
kubelet expands those: "$(NAME)" becomes the value of an env var NAME declared
before (a Secret's key, say) and "$$" becomes "$". Every "$" is doubled, so
that nothing in the text is ever expanded, and the result is quoted for YAML.
Use it for every such value that comes from values or the store (the title,
the store's settings), never for the platform's own "$(VAR)" references.
Call with the text: {{ include "wordpress-store.envText" .Values.title }}.
*/}}
{{- define "wordpress-store.envText" -}}
{{- toString . | replace "$" "$$" | quote -}}
{{- end -}}

{{- define "wordpress-store.title" -}}
{{- .Values.title | default (printf "Store %s" .Values.storeId) -}}
{{- end -}}

{{/* Pod fields shared by every pod: no API token, no service-link env vars. */}}
{{- define "wordpress-store.podDefaults" -}}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Pod securityContext for a non-root user. The official images used here run
as: www-data 33 (wordpress, both apache and wp-cli runs), mysql 999 (mariadb).
Call with (dict "uid" 33).
*/}}
{{- define "wordpress-store.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid }}
runAsGroup: {{ .uid }}
fsGroup: {{ .uid }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container securityContext: Pod Security "restricted" compliant. */}}
{{- define "wordpress-store.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "wordpress-store.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{/*
Environment of every container running WordPress code (apache and wp-cli).
The official image's wp-config-docker.php reads these at run time.

The auth keys and salts must be stable across restarts and equal in every
replica, and the chart may not invent secrets, so each is derived from the
root-password key of the database Secret with a distinct prefix (the
"$(VAR)" references are expanded by the kubelet; nothing secret is in the
pod spec). Rotating root-password logs every user out.
*/}}
{{- define "wordpress-store.wordpressEnv" -}}
- name: WORDPRESS_DB_HOST
  value: {{ include "wordpress-store.envText" (printf "%s-mariadb" (include "wordpress-store.fullname" .)) }}
- name: WORDPRESS_DB_NAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.database }}
      key: database
- name: WORDPRESS_DB_USER
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.database }}
      key: username
- name: WORDPRESS_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.database }}
      key: password
- name: STOREPROV_KEY_SEED
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.database }}
      key: root-password
{{- range list "AUTH_KEY" "SECURE_AUTH_KEY" "LOGGED_IN_KEY" "NONCE_KEY" "AUTH_SALT" "SECURE_AUTH_SALT" "LOGGED_IN_SALT" "NONCE_SALT" }}
- name: WORDPRESS_{{ . }}
  value: {{ printf "%s:$(STOREPROV_KEY_SEED)" (lower .) | quote }}
{{- end }}
# Core files come from the image and live in an emptyDir: an automatic core
# update would be lost at the next restart. Upgrade with the image tag.
- name: WORDPRESS_CONFIG_EXTRA
  value: |
    define('WP_AUTO_UPDATE_CORE', false);
    define('FS_METHOD', 'direct');
{{- end -}}
