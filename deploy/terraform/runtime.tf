# Where the replicators run: GKE (Autopilot by default). Per tier, one replicator Deployment (`logpipe replicate`)
# scaled by an HPA on its subscription's backlog, and one BigQuery loader Deployment (`logpipe load`). Why GKE and not Cloud Run: docs/deploy.md ("Replicator runtime").

locals {
  catalog_mount_path = "/etc/logpipe"
  replicator_env = {
    GOOGLE_CLOUD_PROJECT = var.project_id
    LOGPIPE_BUCKET       = google_storage_bucket.landing.name
    LOGPIPE_DATASET      = google_bigquery_dataset.logs.dataset_id
    LOGPIPE_CATALOG      = "${local.catalog_mount_path}/catalog.yaml"
    # JSON lines with a severity field: Cloud Logging then keeps each entry's level. Text lines on stderr would all
    # be marked ERROR by GKE, and the error metric (monitoring.tf) would count every INFO line.
    LOGPIPE_LOG_FORMAT = "json"
  }
}

resource "google_container_cluster" "replicators" {
  count = var.create_gke_cluster ? 1 : 0

  project             = var.project_id
  name                = var.gke_cluster_name
  location            = var.region
  enable_autopilot    = true
  deletion_protection = var.gke_deletion_protection
  resource_labels     = local.labels

  release_channel {
    channel = "REGULAR"
  }
}

resource "kubernetes_namespace_v1" "logpipe" {
  metadata {
    name   = var.kubernetes_namespace
    labels = { app = "logpipe" }
  }
  depends_on = [google_container_cluster.replicators]
}

# The very catalog Terraform read, so replicators route and validate with the same tiers and categories.
resource "kubernetes_config_map_v1" "catalog" {
  metadata {
    name      = "logpipe-catalog"
    namespace = kubernetes_namespace_v1.logpipe.metadata[0].name
  }
  data = {
    "catalog.yaml" = file(local.catalog_file)
  }
}

module "replicator" {
  source   = "./modules/replicator_gke"
  for_each = local.tiers

  project_id                       = var.project_id
  tier                             = each.key
  namespace                        = kubernetes_namespace_v1.logpipe.metadata[0].name
  image                            = var.replicator_image
  command                          = var.replicator_command
  loader_command                   = concat(var.loader_command, ["--horizon-hours", tostring(var.bigquery_fresh_horizon_hours)])
  service_account_email            = module.tier[each.key].replicator_service_account
  service_account_name             = "projects/${var.project_id}/serviceAccounts/${module.tier[each.key].replicator_service_account}"
  loader_service_account_email     = module.tier[each.key].loader_service_account
  loader_service_account_name      = "projects/${var.project_id}/serviceAccounts/${module.tier[each.key].loader_service_account}"
  env                              = local.replicator_env
  subscription                     = module.tier[each.key].subscription
  catalog_config_map               = kubernetes_config_map_v1.catalog.metadata[0].name
  catalog_mount_path               = local.catalog_mount_path
  min_replicas                     = var.replicator_scaling.min_replicas
  max_replicas                     = var.replicator_scaling.max_replicas
  backlog_per_replica              = var.replicator_scaling.backlog_per_replica
  cpu                              = var.replicator_resources.cpu
  memory                           = var.replicator_resources.memory
  scratch_size                     = var.replicator_resources.scratch
  termination_grace_period_seconds = each.value.ack_deadline_seconds + 30
}

# The HPA reads Pub/Sub backlog through GKE's custom-metrics-stackdriver-adapter (installed in the cluster, see
# docs/deploy.md). The adapter needs to read Cloud Monitoring metrics, a project-level permission by nature; it is
# granted to the adapter's Kubernetes identity only, not to logpipe.
resource "google_project_iam_member" "metrics_adapter_viewer" {
  count = var.grant_metrics_adapter_viewer ? 1 : 0

  project = var.project_id
  role    = "roles/monitoring.viewer"
  member  = "principal://iam.googleapis.com/projects/${data.google_project.this.number}/locations/global/workloadIdentityPools/${var.project_id}.svc.id.goog/subject/ns/custom-metrics/sa/custom-metrics-stackdriver-adapter"
}
