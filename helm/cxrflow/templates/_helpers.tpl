{{- define "cxrflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cxrflow.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "cxrflow.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "cxrflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cxrflow
{{- end -}}

{{- define "cxrflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cxrflow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "cxrflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cxrflow.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cxrflow.image" -}}
{{- $tag := .tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s" .root.Values.image.repository $tag -}}
{{- end -}}

{{/* Name of the Secret holding CXRFLOW_KAFKA_PROPS. */}}
{{- define "cxrflow.kafkaSecret" -}}
{{- if .Values.kafka.existingPropsSecret -}}
{{- .Values.kafka.existingPropsSecret -}}
{{- else -}}
{{- printf "%s-kafka" (include "cxrflow.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Comma-separated librdkafka properties (without the SASL password when it comes from a Secret). */}}
{{- define "cxrflow.kafkaProps" -}}
{{- $p := list -}}
{{- $k := .Values.kafka -}}
{{- if and $k.tls.enabled $k.sasl.enabled -}}
{{- $p = append $p "security.protocol=SASL_SSL" -}}
{{- else if $k.tls.enabled -}}
{{- $p = append $p "security.protocol=SSL" -}}
{{- else if $k.sasl.enabled -}}
{{- $p = append $p "security.protocol=SASL_PLAINTEXT" -}}
{{- end -}}
{{- if $k.tls.enabled -}}
{{- if $k.tls.caSecret -}}
{{- $p = append $p (printf "ssl.ca.location=/etc/cxrflow/kafka-tls/%s" $k.tls.caKey) -}}
{{- end -}}
{{- if $k.tls.clientCertKey -}}
{{- $p = append $p (printf "ssl.certificate.location=/etc/cxrflow/kafka-tls/%s" $k.tls.clientCertKey) -}}
{{- end -}}
{{- if $k.tls.clientKeyKey -}}
{{- $p = append $p (printf "ssl.key.location=/etc/cxrflow/kafka-tls/%s" $k.tls.clientKeyKey) -}}
{{- end -}}
{{- end -}}
{{- if $k.sasl.enabled -}}
{{- $p = append $p (printf "sasl.mechanism=%s" $k.sasl.mechanism) -}}
{{- if not $k.sasl.existingSecret -}}
{{- $p = append $p (printf "sasl.username=%s" $k.sasl.username) -}}
{{- $p = append $p (printf "sasl.password=%s" $k.sasl.password) -}}
{{- end -}}
{{- end -}}
{{- range $key, $val := $k.props -}}
{{- $p = append $p (printf "%s=%v" $key $val) -}}
{{- end -}}
{{- join "," $p -}}
{{- end -}}

{{/* Environment shared by every cxrflow container. */}}
{{- define "cxrflow.commonEnv" -}}
- name: CXRFLOW_BOOTSTRAP
  valueFrom: {configMapKeyRef: {name: {{ include "cxrflow.fullname" . }}, key: CXRFLOW_BOOTSTRAP}}
- name: CXRFLOW_SCHEMA_REGISTRY
  valueFrom: {configMapKeyRef: {name: {{ include "cxrflow.fullname" . }}, key: CXRFLOW_SCHEMA_REGISTRY}}
- name: CXRFLOW_TOPIC_PREFIX
  valueFrom: {configMapKeyRef: {name: {{ include "cxrflow.fullname" . }}, key: CXRFLOW_TOPIC_PREFIX}}
- name: CXRFLOW_OTLP_ENDPOINT
  valueFrom: {configMapKeyRef: {name: {{ include "cxrflow.fullname" . }}, key: CXRFLOW_OTLP_ENDPOINT}}
- name: CXRFLOW_LOG_FORMAT
  valueFrom: {configMapKeyRef: {name: {{ include "cxrflow.fullname" . }}, key: CXRFLOW_LOG_FORMAT}}
{{- if and .Values.kafka.sasl.enabled .Values.kafka.sasl.existingSecret (not .Values.kafka.existingPropsSecret) }}
- name: KAFKA_SASL_USERNAME
  valueFrom: {secretKeyRef: {name: {{ .Values.kafka.sasl.existingSecret }}, key: username}}
- name: KAFKA_SASL_PASSWORD
  valueFrom: {secretKeyRef: {name: {{ .Values.kafka.sasl.existingSecret }}, key: password}}
- name: CXRFLOW_KAFKA_PROPS_BASE
  valueFrom: {secretKeyRef: {name: {{ include "cxrflow.kafkaSecret" . }}, key: CXRFLOW_KAFKA_PROPS}}
- name: CXRFLOW_KAFKA_PROPS
  value: "$(CXRFLOW_KAFKA_PROPS_BASE),sasl.username=$(KAFKA_SASL_USERNAME),sasl.password=$(KAFKA_SASL_PASSWORD)"
{{- else }}
- name: CXRFLOW_KAFKA_PROPS
  valueFrom: {secretKeyRef: {name: {{ include "cxrflow.kafkaSecret" . }}, key: CXRFLOW_KAFKA_PROPS}}
{{- end }}
{{- end -}}

{{- define "cxrflow.kafkaTlsVolume" -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.caSecret }}
- name: kafka-tls
  secret: {secretName: {{ .Values.kafka.tls.caSecret }}}
{{- end }}
{{- end -}}

{{- define "cxrflow.kafkaTlsMount" -}}
{{- if and .Values.kafka.tls.enabled .Values.kafka.tls.caSecret }}
- name: kafka-tls
  mountPath: /etc/cxrflow/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* Access control (README, Access control): no default secret. Without hashed API keys, an
existing Secret of them or a JWKS, the chart refuses to render unless auth.insecureNoAuth. */}}
{{- define "cxrflow.authKeysSecret" -}}
{{- .Values.auth.existingSecret | default (ternary (printf "%s-api-keys" (include "cxrflow.fullname" .)) "" (gt (len .Values.auth.apiKeys) 0)) -}}
{{- end -}}

{{- define "cxrflow.authEnv" -}}
{{- $a := .Values.auth }}
{{- if $a.insecureNoAuth }}
- {name: CXRFLOW_INSECURE_NO_AUTH, value: "true"}
{{- else }}
{{- if not (or (include "cxrflow.authKeysSecret" .) $a.jwt.jwks) }}
{{- fail "auth: give auth.apiKeys (hashed lines from `cxrflow auth new-key`), auth.existingSecret or auth.jwt.jwks; or auth.insecureNoAuth=true" }}
{{- end }}
{{- if include "cxrflow.authKeysSecret" . }}
- {name: CXRFLOW_AUTH_API_KEYS, value: /etc/cxrflow/auth/api-keys}
{{- end }}
{{- with $a.jwt.jwks }}
- {name: CXRFLOW_AUTH_JWKS, value: {{ . | quote }}}
- {name: CXRFLOW_AUTH_JWT_ISSUER, value: {{ required "auth.jwt.issuer is required with auth.jwt.jwks" $a.jwt.issuer | quote }}}
- {name: CXRFLOW_AUTH_JWT_AUDIENCE, value: {{ required "auth.jwt.audience is required with auth.jwt.jwks" $a.jwt.audience | quote }}}
- {name: CXRFLOW_AUTH_JWT_ROLES_CLAIM, value: {{ $a.jwt.rolesClaim | default "roles" | quote }}}
{{- end }}
{{- if $a.secureCookie }}
- {name: CXRFLOW_AUTH_SECURE_COOKIE, value: "true"}
{{- end }}
{{- end }}
{{- with $a.metricsPort }}
- {name: CXRFLOW_METRICS_HTTP, value: "0.0.0.0:{{ . }}"}
{{- end }}
{{- if .Values.tls.secretName }}
- {name: CXRFLOW_TLS_CERT, value: /etc/cxrflow/tls/tls.crt}
- {name: CXRFLOW_TLS_KEY, value: /etc/cxrflow/tls/tls.key}
{{- end }}
{{- end -}}

{{- define "cxrflow.authVolume" -}}
{{- with include "cxrflow.authKeysSecret" . }}
- name: api-keys
  secret: {secretName: {{ . }}, items: [{key: api-keys, path: api-keys}]}
{{- end }}
{{- with .Values.tls.secretName }}
- name: tls
  secret: {secretName: {{ . }}}
{{- end }}
{{- end -}}

{{- define "cxrflow.authMount" -}}
{{- if include "cxrflow.authKeysSecret" . }}
- name: api-keys
  mountPath: /etc/cxrflow/auth
  readOnly: true
{{- end }}
{{- if .Values.tls.secretName }}
- name: tls
  mountPath: /etc/cxrflow/tls
  readOnly: true
{{- end }}
{{- end -}}
