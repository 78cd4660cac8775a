# Inputs of the logpipe module. Tiers, categories, topic/subscription names and the dataset come from the catalog
# (catalog.yaml), never from here.

variable "project_id" {
  description = "Google Cloud project to provision logpipe in."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id: 6-30 characters of [a-z0-9-], starting with a letter."
  }
}

variable "region" {
  description = "Region of the GKE cluster; also the default location of the bucket and the dataset."
  type        = string
  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region such as europe-west1."
  }
}

variable "catalog_file" {
  description = "Path of the catalog YAML. null means the catalog.yaml next to this module, the one logpipe ships."
  type        = string
  default     = null
  validation {
    condition     = var.catalog_file == null || can(regex("\\.ya?ml$", var.catalog_file))
    error_message = "catalog_file must be null or the path of a .yaml/.yml file."
  }
}

variable "labels" {
  description = "Labels added to every labelable resource."
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for k, v in var.labels : can(regex("^[a-z][a-z0-9_-]{0,62}$", k)) && can(regex("^[a-z0-9_-]{0,63}$", v))])
    error_message = "Label keys and values must be lowercase [a-z0-9_-], at most 63 characters, keys starting with a letter."
  }
}

# --- Pub/Sub ------------------------------------------------------------------------------------------------------
variable "retry_minimum_backoff" {
  description = "Shortest redelivery delay of the replicator subscriptions after a nack or an expired ack deadline."
  type        = string
  default     = "10s"
  validation {
    condition     = can(regex("^[0-9]+s$", var.retry_minimum_backoff)) && tonumber(trimsuffix(var.retry_minimum_backoff, "s")) <= 600
    error_message = "retry_minimum_backoff must be a duration in seconds such as \"10s\", at most \"600s\"."
  }
}

variable "retry_maximum_backoff" {
  description = "Longest redelivery delay of the replicator subscriptions after a nack or an expired ack deadline."
  type        = string
  default     = "600s"
  validation {
    condition     = can(regex("^[0-9]+s$", var.retry_maximum_backoff)) && tonumber(trimsuffix(var.retry_maximum_backoff, "s")) <= 600
    error_message = "retry_maximum_backoff must be a duration in seconds such as \"600s\", at most \"600s\"."
  }
}

variable "dead_letter_retention_seconds" {
  description = "How long dead-lettered messages stay in each tier's dead-letter subscription (at most 31 days)."
  type        = number
  default     = 604800
  validation {
    condition     = var.dead_letter_retention_seconds >= 600 && var.dead_letter_retention_seconds <= 2678400
    error_message = "dead_letter_retention_seconds must be between 600 (10 minutes) and 2678400 (31 days)."
  }
}

# --- Landing bucket -----------------------------------------------------------------------------------------------
variable "bucket_name" {
  description = "Name of the landing bucket. null means \"<project_id>-<name_prefix>-landing\"."
  type        = string
  default     = null
  validation {
    condition     = var.bucket_name == null || can(regex("^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be null or a valid bucket name: 3-63 characters of [a-z0-9._-]."
  }
}

variable "bucket_location" {
  description = "Location of the landing bucket. null means var.region; keep it compatible with dataset_location."
  type        = string
  default     = null
  validation {
    condition     = var.bucket_location == null || can(regex("^[A-Za-z]+(-[a-z]+[0-9]+)?$", var.bucket_location))
    error_message = "bucket_location must be null, a multi-region (US, EU) or a region such as europe-west1."
  }
}

variable "staging_retention_days" {
  description = "Days after which intermediate landed objects under staging/ are deleted, committed or not. Must exceed every tier's message retention + 1 h + lateness (checked at plan); the rest is the time to repair a stalled finalizer before acked events are lost."
  type        = number
  default     = 30
  validation {
    condition     = var.staging_retention_days >= 1 && var.staging_retention_days <= 365 && floor(var.staging_retention_days) == var.staging_retention_days
    error_message = "staging_retention_days must be a whole number of days between 1 and 365."
  }
}

variable "bucket_retention_period_seconds" {
  description = "Not supported, must stay null: a bucket retention policy forbids deleting young objects, and logpipe deletes objects minutes after writing them. Kept so that setting it fails with the reason."
  type        = number
  default     = null
  validation {
    condition     = var.bucket_retention_period_seconds == null
    error_message = "bucket_retention_period_seconds must be null. A retention policy makes every delete of a younger object fail with 403, and logpipe deletes objects minutes after creating them (the loader's bq/ bookkeeping, the finalizer's orphan data files), so loading would fail forever. To recover deleted objects, rely on the bucket's soft delete (7 days by default) instead."
  }
}

variable "bucket_force_destroy" {
  description = "Let `terraform destroy` delete the landing bucket with its objects. Keep false outside of throwaway setups."
  type        = bool
  default     = false
}

# --- BigQuery -----------------------------------------------------------------------------------------------------
variable "dataset_location" {
  description = "Location of the BigQuery dataset. null means var.region; must be compatible with the bucket's location for load jobs."
  type        = string
  default     = null
  validation {
    condition     = var.dataset_location == null || can(regex("^[A-Za-z]+(-[a-z]+[0-9]+)?$", var.dataset_location))
    error_message = "dataset_location must be null, a multi-region (US, EU) or a region such as europe-west1."
  }
}

variable "bigquery_fresh_horizon_hours" {
  description = "Hours of not-yet-committed rows the category views show (`logpipe load --horizon-hours`); fresh partitions expire a day later."
  type        = number
  default     = 48
  validation {
    condition     = var.bigquery_fresh_horizon_hours >= 1 && var.bigquery_fresh_horizon_hours <= 192 && floor(var.bigquery_fresh_horizon_hours) == var.bigquery_fresh_horizon_hours
    error_message = "bigquery_fresh_horizon_hours must be a whole number of hours from 1 to 192: the loader remembers manifests for its backfill window (`logpipe load --backfill-hours`, 192), which must contain the horizon, or it refuses to start."
  }
}

variable "table_deletion_protection" {
  description = "Refuse to let Terraform delete the category tables and the data in them."
  type        = bool
  default     = true
}

# --- Identities ---------------------------------------------------------------------------------------------------
variable "workload_identity_federation" {
  description = <<-EOT
    Workload Identity Federation for on-premises front-ends, so they need no service account key. Off by default.
    provider_type "oidc" (oidc_issuer_uri, optional oidc_allowed_audiences) or "aws" (aws_account_id);
    principals are OIDC subjects or AWS role ARNs allowed to act as the front-end service account.
  EOT
  type = object({
    enabled                = bool
    pool_id                = optional(string, "logpipe-frontends")
    provider_type          = optional(string, "oidc")
    oidc_issuer_uri        = optional(string)
    oidc_allowed_audiences = optional(list(string), [])
    aws_account_id         = optional(string)
    attribute_condition    = optional(string)
    principals             = optional(list(string), [])
  })
  default = { enabled = false }
  validation {
    condition = !var.workload_identity_federation.enabled || (
      contains(["oidc", "aws"], var.workload_identity_federation.provider_type) &&
      length(var.workload_identity_federation.principals) > 0 &&
      can(regex("^[a-z][a-z0-9-]{2,30}[a-z0-9]$", var.workload_identity_federation.pool_id))
    )
    error_message = "When enabled, provider_type must be \"oidc\" or \"aws\", principals must not be empty and pool_id must be 4-32 characters of [a-z0-9-]."
  }
  validation {
    condition = !var.workload_identity_federation.enabled || (
      var.workload_identity_federation.provider_type == "oidc" ? can(regex("^https://", var.workload_identity_federation.oidc_issuer_uri)) : can(regex("^[0-9]{12}$", var.workload_identity_federation.aws_account_id))
    )
    error_message = "provider_type \"oidc\" needs an https oidc_issuer_uri; \"aws\" needs a 12-digit aws_account_id."
  }
}

# --- Replicator runtime (GKE) -------------------------------------------------------------------------------------
variable "replicator_image" {
  description = "Container image of logpipe that the replicator and loader deployments run, e.g. europe-docker.pkg.dev/P/logpipe/logpipe:0.1.0."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[^ ]+(:[A-Za-z0-9._-]+|@sha256:[a-f0-9]{64})$", var.replicator_image))
    error_message = "replicator_image must be a full image reference with a tag or digest, e.g. registry/path/logpipe:0.1.0."
  }
}

variable "replicator_command" {
  description = "Command line of the replicator container: the first element is the container's command (it replaces the image's ENTRYPOINT), the rest its args; `--tier <tier>` is appended per deployment."
  type        = list(string)
  default     = ["logpipe", "replicate"]
  validation {
    condition     = length(var.replicator_command) > 0
    error_message = "replicator_command must not be empty."
  }
}

variable "loader_command" {
  description = "Command line of the BigQuery loader container, split like replicator_command; `--horizon-hours <h> --tier <tier>` is appended per deployment."
  type        = list(string)
  default     = ["logpipe", "load"]
  validation {
    condition     = length(var.loader_command) > 0
    error_message = "loader_command must not be empty."
  }
}

variable "create_gke_cluster" {
  description = "Create a GKE Autopilot cluster for the replicators. false: use the cluster the kubernetes provider points at (it needs Workload Identity)."
  type        = bool
  default     = true
}

variable "gke_cluster_name" {
  description = "Name of the GKE cluster created when create_gke_cluster is true."
  type        = string
  default     = "logpipe"
  validation {
    condition     = can(regex("^[a-z]([a-z0-9-]{0,38}[a-z0-9])?$", var.gke_cluster_name))
    error_message = "gke_cluster_name must be 1-40 characters of [a-z0-9-], starting with a letter."
  }
}

variable "gke_deletion_protection" {
  description = "Refuse to let Terraform delete the GKE cluster."
  type        = bool
  default     = true
}

variable "kubernetes_namespace" {
  description = "Kubernetes namespace of the replicator deployments."
  type        = string
  default     = "logpipe"
  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.kubernetes_namespace))
    error_message = "kubernetes_namespace must be a DNS label."
  }
}

variable "replicator_scaling" {
  description = "Autoscaling of each tier's replicator: pod bounds and the backlog (undelivered envelopes) per pod to aim for."
  type = object({
    min_replicas        = optional(number, 1)
    max_replicas        = optional(number, 10)
    backlog_per_replica = optional(number, 500)
  })
  default = {}
  validation {
    condition     = var.replicator_scaling.min_replicas >= 1 && var.replicator_scaling.max_replicas >= var.replicator_scaling.min_replicas && var.replicator_scaling.backlog_per_replica >= 1
    error_message = "replicator_scaling needs 1 <= min_replicas <= max_replicas and backlog_per_replica >= 1."
  }
}

variable "replicator_resources" {
  description = "CPU and memory of one replicator pod (requests = limits, as GKE Autopilot bills requests), and its writable /tmp."
  type = object({
    cpu     = optional(string, "1")
    memory  = optional(string, "2Gi")
    scratch = optional(string, "1Gi")
  })
  default = {}
  validation {
    condition     = can(regex("^[0-9.]+m?$", var.replicator_resources.cpu)) && can(regex("^[0-9]+(Mi|Gi)$", var.replicator_resources.memory)) && can(regex("^[0-9]+(Mi|Gi)$", var.replicator_resources.scratch))
    error_message = "replicator_resources.cpu must look like \"1\" or \"500m\"; memory and scratch like \"2Gi\" or \"512Mi\"."
  }
}

variable "grant_metrics_adapter_viewer" {
  description = "Grant roles/monitoring.viewer to GKE's custom-metrics-stackdriver-adapter so the HPA can read Pub/Sub backlog. false if the cluster admin grants it."
  type        = bool
  default     = true
}

# --- Alerts -------------------------------------------------------------------------------------------------------
variable "notification_channels" {
  description = "Cloud Monitoring notification channels (projects/P/notificationChannels/ID) that every logpipe alert notifies."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[^/]+/notificationChannels/[^/]+$", c))])
    error_message = "Each notification channel must be a resource name projects/P/notificationChannels/ID."
  }
}

variable "oldest_unacked_age_threshold_seconds" {
  description = "Alert when a replicator subscription's oldest unacked message is older than this."
  type        = number
  default     = 900
  validation {
    condition     = var.oldest_unacked_age_threshold_seconds >= 60
    error_message = "oldest_unacked_age_threshold_seconds must be at least 60."
  }
}

variable "replicator_error_threshold" {
  description = "Alert when a tier's replicators log more than this many ERROR entries in 5 minutes."
  type        = number
  default     = 0
  validation {
    condition     = var.replicator_error_threshold >= 0
    error_message = "replicator_error_threshold must not be negative."
  }
}
