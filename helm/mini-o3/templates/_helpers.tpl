{{/* Names, labels, images and Secret names shared by the templates. */}}

{{- define "mini-o3.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mini-o3.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "mini-o3.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mini-o3.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mini-o3.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mini-o3.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mini-o3
{{- end -}}

{{- define "mini-o3.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "mini-o3.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image tag: images.tag, else "v" + appVersion (mini_o3.images.default_tag). */}}
{{- define "mini-o3.imageTag" -}}
{{- default (printf "v%s" .Chart.AppVersion) .Values.images.tag -}}
{{- end -}}

{{/* mini-o3.image: the reference of a runtime (base, sft, rl, eval): {registry}/mini-o3-{runtime}:{tag}. */}}
{{- define "mini-o3.image" -}}
{{- printf "%s/mini-o3-%s:%s" (trimSuffix "/" .root.Values.images.registry) .runtime (include "mini-o3.imageTag" .root) -}}
{{- end -}}

{{- define "mini-o3.namespace" -}}
{{- default .Release.Namespace .Values.kfp.namespace -}}
{{- end -}}

{{/* Secret names: an existing Secret, else the one the chart creates (or expects). */}}
{{- define "mini-o3.s3SecretName" -}}
{{- default .Values.objectStore.secretName .Values.objectStore.existingSecret -}}
{{- end -}}

{{- define "mini-o3.judgeSecretName" -}}
{{- default .Values.judge.secretName .Values.judge.existingSecret -}}
{{- end -}}

{{- define "mini-o3.hfSecretName" -}}
{{- default .Values.huggingface.secretName .Values.huggingface.existingSecret -}}
{{- end -}}

{{/* Whether the chart creates each Secret (inline values given), after checking they are consistent. */}}
{{- define "mini-o3.createS3Secret" -}}
{{- $o := .Values.objectStore -}}
{{- if or $o.accessKey $o.secretKey -}}
{{- if $o.existingSecret -}}
{{- fail "objectStore: set either existingSecret or accessKey/secretKey, not both" -}}
{{- end -}}
{{- if not (and $o.accessKey $o.secretKey) -}}
{{- fail "objectStore: accessKey and secretKey go together (or use existingSecret)" -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{- define "mini-o3.judgeMode" -}}
{{- $j := .Values.judge -}}
{{- $azure := or $j.azure.endpoint $j.azure.apiKey $j.azure.apiVersion -}}
{{- $openai := or $j.openai.baseUrl $j.openai.apiKey -}}
{{- if and $azure $openai -}}
{{- fail "judge: set azure or openai values, not both" -}}
{{- end -}}
{{- if and $j.existingSecret (or $azure $openai) -}}
{{- fail "judge: set either existingSecret or azure/openai values, not both" -}}
{{- end -}}
{{- if $azure -}}
{{- if not (and $j.azure.endpoint $j.azure.apiKey $j.azure.apiVersion) -}}
{{- fail "judge.azure: endpoint, apiKey and apiVersion are all required" -}}
{{- end -}}
azure
{{- else if $openai -}}
{{- if not (and $j.openai.baseUrl $j.openai.apiKey) -}}
{{- fail "judge.openai: baseUrl and apiKey are both required" -}}
{{- end -}}
openai
{{- end -}}
{{- end -}}

{{- define "mini-o3.mlflowName" -}}
{{- printf "%s-mlflow" (include "mini-o3.fullname" .) -}}
{{- end -}}

{{/* The tracking URI pipeline runs get: the chart's MLflow server, else trackingUri. */}}
{{- define "mini-o3.trackingUri" -}}
{{- if .Values.mlflow.enabled -}}
{{- printf "http://%s.%s.svc.cluster.local:%d" (include "mini-o3.mlflowName" .) .Release.Namespace (int .Values.mlflow.service.port) -}}
{{- else -}}
{{- .Values.trackingUri -}}
{{- end -}}
{{- end -}}

{{- define "mini-o3.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{- define "mini-o3.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/* The shared work PVC: sharedVolume.name, else <fullname>-work when the chart creates it; "" when none. */}}
{{- define "mini-o3.sharedVolumeName" -}}
{{- if .Values.sharedVolume.name -}}
{{- .Values.sharedVolume.name -}}
{{- else if .Values.sharedVolume.create -}}
{{- printf "%s-work" (include "mini-o3.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
