# A production setup: protected data, keyless on-premises front-ends (Workload Identity Federation), alerts routed
# to on-call.
#   terraform init && terraform apply -var-file=prod.tfvars

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
  description = "Production project."
  type        = string
}

variable "region" {
  description = "Region of the cluster, bucket and dataset."
  type        = string
  default     = "europe-west1"
}

variable "replicator_image" {
  description = "logpipe container image (pin a digest in production)."
  type        = string
}

variable "notification_channels" {
  description = "On-call notification channels (projects/P/notificationChannels/ID)."
  type        = list(string)
}

variable "oidc_issuer_uri" {
  description = "Issuer of the on-premises identity provider whose tokens front-ends exchange for Google credentials."
  type        = string
}

variable "frontend_subjects" {
  description = "OIDC subjects of the on-premises front-ends allowed to publish."
  type        = list(string)
}

provider "google" {
  project = var.project_id
  region  = var.region
}

data "google_client_config" "current" {}

provider "kubernetes" {
  host                   = "https://${module.logpipe.gke_cluster.endpoint}"
  token                  = data.google_client_config.current.access_token
  cluster_ca_certificate = base64decode(module.logpipe.gke_cluster.ca_certificate)
}

module "logpipe" {
  source = "../.."

  project_id            = var.project_id
  region                = var.region
  replicator_image      = var.replicator_image
  labels                = { env = "prod" }
  notification_channels = var.notification_channels

  # staging/ objects go after the default 30 days: room to repair a stalled finalizer (the finalization alert fires
  # after an hour). No bucket retention policy: logpipe deletes objects (variables.tf says why).

  workload_identity_federation = {
    enabled         = true
    provider_type   = "oidc"
    oidc_issuer_uri = var.oidc_issuer_uri
    principals      = var.frontend_subjects
  }

  replicator_scaling   = { min_replicas = 2, max_replicas = 30, backlog_per_replica = 500 }
  replicator_resources = { cpu = "2", memory = "4Gi" }
}

output "logpipe" {
  description = "What logpipe's configuration needs (topics, subscriptions, bucket, dataset, service accounts, WIF provider)."
  value = {
    project_id                 = module.logpipe.project_id
    topics                     = module.logpipe.topics
    subscriptions              = module.logpipe.subscriptions
    bucket                     = module.logpipe.bucket
    dataset                    = module.logpipe.dataset
    service_accounts           = module.logpipe.service_accounts
    workload_identity_provider = module.logpipe.workload_identity_provider
    env                        = module.logpipe.logpipe_env
  }
}
