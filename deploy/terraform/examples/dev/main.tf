# A development setup: small, cheap, easy to tear down, optionally pointed at local emulators.
#   terraform init && terraform apply -var-file=dev.tfvars

terraform {
  required_version = ">= 1.7"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.0, < 8.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = ">= 2.23, < 3.0"
    }
  }
}

variable "project_id" {
  description = "Development project."
  type        = string
}

variable "region" {
  description = "Region of the cluster, bucket and dataset."
  type        = string
  default     = "europe-west1"
}

variable "replicator_image" {
  description = "logpipe container image to run as the replicators."
  type        = string
}

variable "emulator_endpoints" {
  description = "Optional custom endpoints (pubsub, storage, bigquery) to target emulators instead of Google Cloud; see README.md \"Deploy\"."
  type = object({
    pubsub   = optional(string)
    storage  = optional(string)
    bigquery = optional(string)
  })
  default = {}
}

provider "google" {
  project                   = var.project_id
  region                    = var.region
  pubsub_custom_endpoint    = var.emulator_endpoints.pubsub
  storage_custom_endpoint   = var.emulator_endpoints.storage
  big_query_custom_endpoint = var.emulator_endpoints.bigquery
}

data "google_client_config" "current" {}

provider "kubernetes" {
  host                   = "https://${module.logpipe.gke_cluster.endpoint}"
  token                  = data.google_client_config.current.access_token
  cluster_ca_certificate = base64decode(module.logpipe.gke_cluster.ca_certificate)
}

module "logpipe" {
  source = "../.."

  project_id       = var.project_id
  region           = var.region
  replicator_image = var.replicator_image
  labels           = { env = "dev" }

  # Throwaway data: let destroy remove it. Staging objects go after 8 days, the least the shipped catalog allows
  # (its longest message retention is 7 days; storage.tf checks this).
  bucket_force_destroy      = true
  table_deletion_protection = false
  gke_deletion_protection   = false
  staging_retention_days    = 8

  replicator_scaling   = { min_replicas = 1, max_replicas = 2, backlog_per_replica = 200 }
  replicator_resources = { cpu = "500m", memory = "1Gi" }
}

output "logpipe" {
  description = "What logpipe's configuration needs (topics, subscriptions, bucket, dataset, service accounts)."
  value = {
    project_id       = module.logpipe.project_id
    topics           = module.logpipe.topics
    subscriptions    = module.logpipe.subscriptions
    bucket           = module.logpipe.bucket
    dataset          = module.logpipe.dataset
    service_accounts = module.logpipe.service_accounts
    env              = module.logpipe.logpipe_env
  }
}
