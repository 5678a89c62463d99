{{/* The name of a component's objects: <release>-<component>. */}}
{{- define "lifecycle.name" -}}
{{- printf "%s-%s" .root.Release.Name .component | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/* Labels that select a component's pods; never change them on upgrade. */}}
{{- define "lifecycle.selector" -}}
app.kubernetes.io/name: lifecycle-{{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name | quote }}
{{- end }}

{{- define "lifecycle.labels" -}}
{{ include "lifecycle.selector" . }}
app.kubernetes.io/part-of: lifecycle-ops
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | quote }}
{{- end }}

{{/* Where the profile file is mounted, if it is a file at all. */}}
{{- define "lifecycle.profileConfigMap" -}}
{{- if .Values.profile.existingConfigMap -}}
{{ .Values.profile.existingConfigMap }}
{{- else if .Values.profile.inline -}}
{{ .Release.Name }}-profile
{{- end -}}
{{- end }}

{{/*
The pod spec every component shares: security context, settings, secrets, scratch space,
the profile, and spread over nodes and zones. Called with the component's name, its
values, its container args and ports.
*/}}
{{- define "lifecycle.podSpec" -}}
{{- $root := .root -}}
{{- $values := .values -}}
{{- $profile := include "lifecycle.profileConfigMap" $root -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets: {{- toYaml . | nindent 2 }}
{{- end }}
securityContext: {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: 30
{{- if $root.Values.topologySpread.enabled }}
topologySpreadConstraints:
  {{- range $key := list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
  - maxSkew: {{ $root.Values.topologySpread.maxSkew }}
    topologyKey: {{ $key }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels: {{- include "lifecycle.selector" (dict "root" $root "component" $.component) | nindent 8 }}
  {{- end }}
{{- end }}
{{- with $values.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity: {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: {{ .component }}
    image: "{{ $root.Values.image.repository }}:{{ $root.Values.image.tag }}"
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args: {{ toJson .args }}
    envFrom:
      - configMapRef: {name: {{ $root.Release.Name }}-config}
      - secretRef: {name: {{ $root.Values.existingSecret }}}
    ports: {{- toYaml .ports | nindent 6 }}
    resources: {{- toYaml $values.resources | nindent 6 }}
    securityContext: {{- toYaml $root.Values.securityContext | nindent 6 }}
    {{- .probes | nindent 4 }}
    volumeMounts:
      - {name: tmp, mountPath: /tmp}
      {{- if $profile }}
      - {name: profile, mountPath: /etc/lifecycle, readOnly: true}
      {{- end }}
volumes:
  - name: tmp
    emptyDir: {}
  {{- if $profile }}
  - name: profile
    configMap: {name: {{ $profile }}}
  {{- end }}
{{- end }}

{{/* Pods roll when the settings or the inline profile change. */}}
{{- define "lifecycle.podAnnotations" -}}
checksum/config: {{ include (print $.Template.BasePath "/config.yaml") . | sha256sum }}
{{- end }}
