{{/*
Names, labels and the pieces of relay.yaml the chart computes.
*/}}

{{- define "relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The prefix of every object's name. */}}
{{- define "relay.fullname" -}}
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

{{- define "relay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; "component" is relay or nats. */}}
{{- define "relay.labels" -}}
helm.sh/chart: {{ include "relay.chart" .root }}
{{ include "relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: relay
{{- end }}

{{- define "relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "relay.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "relay.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "relay.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{- define "relay.configMapName" -}}
{{- .Values.existingConfigMap | default (printf "%s-config" (include "relay.fullname" .)) }}
{{- end }}

{{- define "relay.natsName" -}}
{{- printf "%s-nats" (include "relay.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "relay.natsHeadlessName" -}}
{{- printf "%s-nats-headless" (include "relay.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The NATS the relays connect to: the chart's own cluster's client Service, or nats.url. */}}
{{- define "relay.natsURL" -}}
{{- if .Values.nats.cluster.enabled }}
{{- printf "nats://%s:4222" (include "relay.natsName" .) }}
{{- else }}
{{- required "nats.url is required: the NATS (2.10 or newer, with JetStream) the relays share, or set nats.cluster.enabled (values-with-nats.yaml)" .Values.nats.url }}
{{- end }}
{{- end }}

{{- define "relay.natsAuthSecret" -}}
{{- .Values.nats.auth.existingSecret | default .Values.secrets.name }}
{{- end }}

{{/* Files mounted from the NATS auth Secret: a creds file and an nkey seed file. */}}
{{- define "relay.natsAuthFiles" -}}
{{- with .Values.nats.auth }}
{{- if .credsKey }}
- key: {{ .credsKey }}
  path: nats.creds
{{- end }}
{{- if .nkeySeedKey }}
- key: {{ .nkeySeedKey }}
  path: nkey.seed
{{- end }}
{{- end }}
{{- end }}

{{/*
Every environment variable read from a Secret, as a JSON object name -> {secretName, key}:
secrets.env, secrets.extraEnv and the NATS user, password and token.
*/}}
{{- define "relay.secretEnv" -}}
{{- $env := dict }}
{{- range $name, $key := .Values.secrets.env }}
{{- $_ := set $env $name (dict "secretName" $.Values.secrets.name "key" $key) }}
{{- end }}
{{- range $name, $ref := .Values.secrets.extraEnv }}
{{- $_ := set $env $name (dict "secretName" (required (printf "secrets.extraEnv.%s.secretName is required" $name) $ref.secretName) "key" (required (printf "secrets.extraEnv.%s.key is required" $name) $ref.key)) }}
{{- end }}
{{- $secret := include "relay.natsAuthSecret" . }}
{{- with .Values.nats.auth }}
{{- if .userKey }}{{ $_ := set $env "RELAY_NATS_USER" (dict "secretName" $secret "key" .userKey) }}{{ end }}
{{- if .passwordKey }}{{ $_ := set $env "RELAY_NATS_PASSWORD" (dict "secretName" $secret "key" .passwordKey) }}{{ end }}
{{- if .tokenKey }}{{ $_ := set $env "RELAY_NATS_TOKEN" (dict "secretName" $secret "key" .tokenKey) }}{{ end }}
{{- end }}
{{- $env | toJson }}
{{- end }}

{{/* Whether a value is exactly one ${VAR} reference. */}}
{{- define "relay.isRef" -}}
{{- if regexMatch "^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$" (toString .) }}true{{ end }}
{{- end }}

{{/*
checkSecretValues fails when a secret position of relay.yaml holds a literal value rather
than a ${VAR} reference: what is in relay.yaml is in a ConfigMap, readable by anyone who may
read ConfigMaps. Called with (dict "at" "config.destinations[0]" "d" <destination map>).
*/}}
{{- define "relay.checkSecretList" -}}
{{- range $i, $s := .list }}
{{- if not (include "relay.isRef" $s) }}
{{- fail (printf "%s[%d] holds a literal secret: relay.yaml is a ConfigMap, so write \"${NAME}\" there and give NAME in secrets.env (a key of the Secret %s) or secrets.extraEnv" $.at $i $.secretName) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "relay.checkHeaders" -}}
{{- range $name, $v := .headers }}
{{- if and (regexMatch "(?i)authorization|token|secret|key|password|cookie|credential" $name) (not (regexMatch "\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}" (toString $v))) }}
{{- fail (printf "%s.headers.%s looks like a secret but holds no ${VAR}: relay.yaml is a ConfigMap, so write e.g. \"Bearer ${NAME}\" and give NAME in secrets.env" $.at $name) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "relay.checkURL" -}}
{{- if regexMatch "://[^/@]*@" (toString .url) }}
{{- fail (printf "%s carries a user or password: relay.yaml is a ConfigMap, so pass credentials another way (a header with ${VAR}, nats.auth)" .at) }}
{{- end }}
{{- end }}

{{- define "relay.checkConfig" -}}
{{- $cfg := .Values.config | default dict }}
{{- $sn := .Values.secrets.name }}
{{- $nats := get $cfg "nats" | default dict }}
{{- range $k := list "url" "replicas" "data_dir" "credentials" "nkey_seed_file" "user" "password" "token" "tls" }}
{{- if hasKey $nats $k }}
{{- fail (printf "config.nats.%s is set by the chart: use the values nats.url, nats.replicas, nats.auth and nats.tls (values.yaml)" $k) }}
{{- end }}
{{- end }}
{{- $ingest := get $cfg "ingest" | default dict }}
{{- if hasKey $ingest "listen" }}{{ fail "config.ingest.listen is set by the chart: use ingest.port" }}{{ end }}
{{- $admin := get $cfg "admin" | default dict }}
{{- if hasKey $admin "listen" }}{{ fail "config.admin.listen is set by the chart: use admin.port" }}{{ end }}
{{- include "relay.checkSecretList" (dict "at" "config.ingest.tokens" "list" (get $ingest "tokens" | default list) "secretName" $sn) }}
{{- if not (include "relay.isRef" (get $admin "token")) }}
{{- fail (printf "config.admin.token must be a ${VAR} reference (relay.yaml is a ConfigMap): \"${RELAY_ADMIN_TOKEN}\" with secrets.env.RELAY_ADMIN_TOKEN naming its key in the Secret %s" $sn) }}
{{- end }}
{{- range $i, $d := get $cfg "destinations" | default list }}
{{- $at := printf "config.destinations[%d]" $i }}
{{- include "relay.checkSecretList" (dict "at" (printf "%s.secrets" $at) "list" ($d.secrets | default list) "secretName" $sn) }}
{{- include "relay.checkHeaders" (dict "at" $at "headers" ($d.headers | default dict)) }}
{{- include "relay.checkURL" (dict "at" (printf "%s.url" $at) "url" ($d.url | default "")) }}
{{- include "relay.checkURL" (dict "at" (printf "%s.instance_url" $at) "url" ($d.instance_url | default "")) }}
{{- with $d.auth }}
{{- if and .client_secret (not (include "relay.isRef" .client_secret)) }}
{{- fail (printf "%s.auth.client_secret holds a literal secret: write \"${NAME}\" and give NAME in secrets.env or secrets.extraEnv" $at) }}
{{- end }}
{{- end }}
{{- end }}
{{- with get $cfg "alerts" }}
{{- include "relay.checkSecretList" (dict "at" "config.alerts.secrets" "list" (.secrets | default list) "secretName" $sn) }}
{{- include "relay.checkHeaders" (dict "at" "config.alerts" "headers" (.headers | default dict)) }}
{{- include "relay.checkURL" (dict "at" "config.alerts.url" "url" (.url | default "")) }}
{{- end }}
{{- end }}

{{/*
relay.yaml: the `config` values with the keys the chart owns set from the other values.
*/}}
{{- define "relay.config" -}}
{{- include "relay.checkConfig" . }}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $nats := get $cfg "nats" | default dict }}
{{- $_ := set $nats "url" (include "relay.natsURL" .) }}
{{- $_ := set $nats "replicas" (int .Values.nats.replicas) }}
{{- with .Values.nats.auth }}
{{- if .credsKey }}{{ $_ := set $nats "credentials" "/etc/relay/nats-auth/nats.creds" }}{{ end }}
{{- if .nkeySeedKey }}{{ $_ := set $nats "nkey_seed_file" "/etc/relay/nats-auth/nkey.seed" }}{{ end }}
{{- if .userKey }}{{ $_ := set $nats "user" "${RELAY_NATS_USER}" }}{{ end }}
{{- if .passwordKey }}{{ $_ := set $nats "password" "${RELAY_NATS_PASSWORD}" }}{{ end }}
{{- if .tokenKey }}{{ $_ := set $nats "token" "${RELAY_NATS_TOKEN}" }}{{ end }}
{{- end }}
{{- if .Values.nats.tls.enabled }}
{{- $tls := dict }}
{{- with .Values.nats.tls }}
{{- if .caKey }}{{ $_ := set $tls "ca_file" "/etc/relay/nats-tls/ca.crt" }}{{ end }}
{{- if .certKey }}{{ $_ := set $tls "cert_file" "/etc/relay/nats-tls/tls.crt" }}{{ end }}
{{- if .keyKey }}{{ $_ := set $tls "key_file" "/etc/relay/nats-tls/tls.key" }}{{ end }}
{{- end }}
{{- $_ := set $nats "tls" $tls }}
{{- end }}
{{- $_ := set $cfg "nats" $nats }}
{{- $ingest := get $cfg "ingest" | default dict }}
{{- $_ := set $ingest "listen" (printf ":%d" (int .Values.ingest.port)) }}
{{- $_ := set $cfg "ingest" $ingest }}
{{- $admin := get $cfg "admin" | default dict }}
{{- $_ := set $admin "listen" (printf ":%d" (int .Values.admin.port)) }}
{{- $_ := set $cfg "admin" $admin }}
{{- $yaml := toYaml $cfg }}
{{- $known := include "relay.secretEnv" . | fromJson }}
{{- range .Values.env }}{{ $_ := set $known .name true }}{{ end }}
{{- range $ref := regexFindAll "\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}" $yaml -1 | uniq }}
{{- $name := trimSuffix "}" (trimPrefix "${" $ref) }}
{{- if not (hasKey $known $name) }}
{{- fail (printf "relay.yaml references %s, but the pods have no variable %s: add it to secrets.env (a key of the Secret %s), secrets.extraEnv or env" $ref $name $.Values.secrets.name) }}
{{- end }}
{{- end }}
{{- $yaml }}
{{- end }}

{{/* Checks of the values that concern NATS. */}}
{{- define "relay.checkNATS" -}}
{{- with .Values.nats.auth }}
{{- $given := list }}
{{- if .credsKey }}{{ $given = append $given "credsKey" }}{{ end }}
{{- if .nkeySeedKey }}{{ $given = append $given "nkeySeedKey" }}{{ end }}
{{- if or .userKey .passwordKey }}{{ $given = append $given "userKey/passwordKey" }}{{ end }}
{{- if .tokenKey }}{{ $given = append $given "tokenKey" }}{{ end }}
{{- if gt (len $given) 1 }}
{{- fail (printf "nats.auth: give one way to authenticate, not %d: %s" (len $given) (join ", " $given)) }}
{{- end }}
{{- if and (or .userKey .passwordKey) (not (and .userKey .passwordKey)) }}
{{- fail "nats.auth: userKey and passwordKey go together" }}
{{- end }}
{{- if and $.Values.nats.cluster.enabled (or .credsKey .nkeySeedKey) }}
{{- fail "nats.auth: the chart's own NATS cluster (nats.cluster.enabled) takes user/password or a token only; a creds file or an nkey needs a NATS set up with accounts (the NATS project's chart)" }}
{{- end }}
{{- end }}
{{- if and .Values.nats.tls.enabled (not .Values.nats.tls.existingSecret) }}
{{- fail "nats.tls.enabled needs nats.tls.existingSecret: the Secret holding the CA (and client certificate)" }}
{{- end }}
{{- if and .Values.nats.tls.enabled .Values.nats.cluster.enabled }}
{{- fail "nats.tls: the chart's own NATS cluster (nats.cluster.enabled) serves no TLS; use the NATS project's chart for TLS" }}
{{- end }}
{{- if and (not .Values.nats.cluster.enabled) (or (eq (toString .Values.nats.url) "embedded") (regexMatch "://[^/@,]*@" (toString .Values.nats.url))) }}
{{- fail "nats.url: the URL of an external NATS without user or password (those go in nats.auth); the embedded NATS cannot be shared by several pods" }}
{{- end }}
{{- end }}
