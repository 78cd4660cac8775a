# Exactly what logpipe's configuration needs. Names match service.catalog (Catalog.topic(tier), ...), so
# `logpipe serve` / `logpipe replicate` derive the same ones from the catalog; these outputs let you check.

output "project_id" {
  description = "Project everything was created in (GOOGLE_CLOUD_PROJECT)."
  value       = var.project_id
}

output "topics" {
  description = "Pub/Sub topic per tier (front-ends publish here): tier => topic name."
  value       = { for k, m in module.tier : k => m.topic }
}

output "subscriptions" {
  description = "Replicator subscription per tier: tier => subscription name."
  value       = { for k, m in module.tier : k => m.subscription }
}

output "dead_letter_topics" {
  description = "Dead-letter topic per tier: tier => topic name."
  value       = { for k, m in module.tier : k => m.dead_letter_topic }
}

output "dead_letter_subscriptions" {
  description = "Subscription keeping each tier's dead-lettered messages: tier => subscription name."
  value       = { for k, m in module.tier : k => m.dead_letter_subscription }
}

output "bucket" {
  description = "Landing bucket (LOGPIPE_BUCKET)."
  value       = google_storage_bucket.landing.name
}

output "dataset" {
  description = "BigQuery dataset (LOGPIPE_DATASET)."
  value       = google_bigquery_dataset.logs.dataset_id
}

output "tables" {
  description = "What users query per category: category => view name (the view is created by `logpipe load`)."
  value       = { for k, m in module.bigquery_category : k => m.view_id }
}

output "committed_tables" {
  description = "Committed table per category: category => table id (<category>__committed)."
  value       = { for k, m in module.bigquery_category : k => m.table_id }
}

output "fresh_tables" {
  description = "Fresh table per tier: tier => table id (_fresh_<tier>)."
  value       = { for k, m in module.bigquery_fresh : k => m.table_id }
}

output "service_accounts" {
  description = "Service account emails: frontend, replicators and loaders (each tier => email)."
  value = {
    frontend    = google_service_account.frontend.email
    replicators = { for k, m in module.tier : k => m.replicator_service_account }
    loaders     = { for k, m in module.tier : k => m.loader_service_account }
  }
}

output "workload_identity_provider" {
  description = "Workload identity pool provider for on-premises front-ends (null when federation is off)."
  value       = one(module.workload_identity[*].provider_name)
}

output "gke_cluster" {
  description = "The replicators' GKE cluster (null when create_gke_cluster is false): name, location, endpoint, CA certificate."
  value = one([for c in google_container_cluster.replicators : {
    name           = c.name
    location       = c.location
    endpoint       = c.endpoint
    ca_certificate = one(c.master_auth[*].cluster_ca_certificate)
  }])
}

output "logpipe_env" {
  description = "Environment for `logpipe serve` / `logpipe replicate` (names as printed by `logpipe env`)."
  value = {
    GOOGLE_CLOUD_PROJECT = var.project_id
    LOGPIPE_BUCKET       = google_storage_bucket.landing.name
    LOGPIPE_DATASET      = google_bigquery_dataset.logs.dataset_id
  }
}
