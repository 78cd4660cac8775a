variable "project_id" {
  description = "Google Cloud project of the cluster, the subscription, the bucket and the dataset."
  type        = string
}

variable "tier" {
  description = "Name of the tier this deployment replicates."
  type        = string
}

variable "namespace" {
  description = "Kubernetes namespace of the deployment."
  type        = string
}

variable "image" {
  description = "Container image of logpipe (runs `logpipe replicate`)."
  type        = string
}

variable "command" {
  description = "Command line that starts the replicator; `--tier <tier>` is appended."
  type        = list(string)
}

variable "loader_command" {
  description = "Command line that starts the BigQuery loader; `--tier <tier>` is appended."
  type        = list(string)
}

variable "service_account_email" {
  description = "Google service account the pods act as (through GKE Workload Identity)."
  type        = string
}

variable "service_account_name" {
  description = "Resource name (projects/P/serviceAccounts/EMAIL) of that service account, for the Workload Identity binding."
  type        = string
}

variable "env" {
  description = "Environment of the replicator: project, bucket, dataset and catalog path (names as in `logpipe env`)."
  type        = map(string)
}

variable "subscription" {
  description = "The tier's subscription; its backlog drives the autoscaler."
  type        = string
}

variable "catalog_config_map" {
  description = "ConfigMap holding catalog.yaml, mounted read-only at catalog_mount_path."
  type        = string
}

variable "catalog_mount_path" {
  description = "Directory where the catalog ConfigMap is mounted."
  type        = string
}

variable "min_replicas" {
  description = "Fewest replicator pods, also when the subscription is empty."
  type        = number
}

variable "max_replicas" {
  description = "Most replicator pods."
  type        = number
}

variable "backlog_per_replica" {
  description = "Undelivered messages (envelopes) per pod the autoscaler aims for."
  type        = number
}

variable "cpu" {
  description = "CPU request and limit of one pod (Kubernetes quantity)."
  type        = string
}

variable "memory" {
  description = "Memory request and limit of one pod (Kubernetes quantity)."
  type        = string
}

variable "termination_grace_period_seconds" {
  description = "Time a pod gets after SIGTERM to finish in-flight envelopes before SIGKILL."
  type        = number
}

variable "scratch_size" {
  description = "Size limit of the pod's writable /tmp (the root filesystem is read-only)."
  type        = string
}
