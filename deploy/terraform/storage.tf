# The landing bucket. The replicator writes intermediate landed objects under staging/ and committed files under
# logs/; once finalization has committed a partition, its staging/ objects are garbage, so a lifecycle rule deletes
# them after staging_retention_days.

resource "google_storage_bucket" "landing" {
  project                     = var.project_id
  name                        = local.bucket_name
  location                    = local.bucket_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.bucket_force_destroy
  labels                      = local.labels

  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age            = var.staging_retention_days
      matches_prefix = ["staging/"]
    }
  }

  dynamic "retention_policy" {
    for_each = var.bucket_retention_period_seconds == null ? [] : [var.bucket_retention_period_seconds]
    content {
      retention_period = retention_policy.value
    }
  }
}

# Replicators create, read, list and delete objects (landing, finalization, compaction): objectAdmin on this bucket
# only, never a project-level storage role.
resource "google_storage_bucket_iam_member" "replicator_object_admin" {
  for_each = local.tiers

  bucket = google_storage_bucket.landing.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${module.tier[each.key].replicator_service_account}"
}
