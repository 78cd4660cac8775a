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
  description = "Container image of logpipe (`logpipe` on PATH; runs `logpipe replicate` and `logpipe load`)."
  type        = string
}

variable "command" {
  description = "Command line that starts the replicator: element 0 becomes the container's command, the rest its args; `--tier <tier>` is appended."
  type        = list(string)
  validation {
    condition     = length(var.command) > 0
    error_message = "command must not be empty."
  }
}

variable "loader_command" {
  description = "Command line that starts the BigQuery loader, split like command; `--tier <tier>` is appended."
  type        = list(string)
  validation {
    condition     = length(var.loader_command) > 0
    error_message = "loader_command must not be empty."
  }
}

variable "service_account_email" {
  description = "Google service account the replicator pods act as (through GKE Workload Identity)."
  type        = string
}

variable "service_account_name" {
  description = "Resource name (projects/P/serviceAccounts/EMAIL) of that service account, for the Workload Identity binding."
  type        = string
}

variable "loader_service_account_email" {
  description = "Google service account the loader pod acts as (through GKE Workload Identity)."
  type        = string
}

variable "loader_service_account_name" {
  description = "Resource name (projects/P/serviceAccounts/EMAIL) of the loader's service account, for its Workload Identity binding."
  type        = string
}

variable "env" {
  description = "Environment of both containers: project, bucket, dataset, catalog path and log format."
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
