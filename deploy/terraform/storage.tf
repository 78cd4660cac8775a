# The landing bucket. The replicator writes intermediate landed objects under staging/ and committed files under
# logs/; the loader keeps its bookkeeping under bq/. Once finalization has committed a partition, its staging/ objects
# are garbage, so a lifecycle rule deletes them after staging_retention_days. The rule does not know whether an
# object was committed: it must not fire before finalization could have run (precondition below, docs/deploy.md).

locals {
  # `logpipe replicate --lateness-seconds` default (replicator/config.py); the deployments do not override it.
  replicator_lateness_seconds = 600
  # Longest time a staging object must outlive its creation: a redelivery of its message (up to the longest message
  # retention of any tier) must still find it, and its hour must close (1 h + lateness) before finalization runs.
  longest_message_retention_seconds = max(0, [for t in local.tiers : t.message_retention_seconds]...)
  staging_min_age_seconds           = local.longest_message_retention_seconds + 3600 + local.replicator_lateness_seconds
}

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

  # The loader's fresh-path files (one Avro file per staging object, batch records and markers). They serve only
  # staging objects of the last horizon_hours (at most 192); the loader deletes them once committed, but one that was
  # converted ahead and committed before any batch took it is left (another loader's pending batch may still need
  # it). 10 days is past every horizon and backfill window (docs/bigquery.md, "Operations").
  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age            = 10
      matches_prefix = ["bq/fresh/"]
    }
  }

  # Finalization claims (replicator/claims.py): a live claim is re-created every minute, so one a day old belongs to a
  # worker that died holding it after nobody else claimed that partition again. Advisory only: deleting one is safe.
  lifecycle_rule {
    action {
      type = "Delete"
    }
    condition {
      age            = 1
      matches_prefix = ["claims/"]
    }
  }

  # Not a variable validation: the message retentions come from the catalog (a local), and validations may refer to
  # other objects only from Terraform 1.9 on (versions.tf allows 1.7).
  lifecycle {
    precondition {
      condition     = var.staging_retention_days * 86400 > local.staging_min_age_seconds
      error_message = "staging_retention_days (${var.staging_retention_days}) must exceed the longest message_retention_seconds of the catalog's tiers plus 1 h plus the replicator's lateness (${local.staging_min_age_seconds} s in all, so at least ${floor(local.staging_min_age_seconds / 86400) + 1} days): the lifecycle rule deletes staging/ objects whether or not finalization has committed them, so a shorter age can delete acked events (docs/deploy.md, \"Landing bucket\")."
    }
  }
}

# What logpipe does with objects, and nothing more: create (never overwrite: every create has ifGenerationMatch=0),
# read, list and delete. Not roles/storage.objectAdmin (it adds update, setRetention, object ACLs/IAM, ...). No
# storage.buckets.get: the client's bucket-metadata fetch is switched off (service/cli.py), and the replicator's
# start-up connection warm-up (replicator/gcs_upload.py) opens its connections with any answer, a 403 included.
resource "google_project_iam_custom_role" "landing_objects" {
  project     = var.project_id
  role_id     = "${replace(local.name_prefix, "-", "_")}_landing_objects"
  title       = "logpipe landing objects"
  description = "Create, read, list and delete objects; granted on the logpipe landing bucket only."
  permissions = [
    "storage.objects.create",
    "storage.objects.delete",
    "storage.objects.get",
    "storage.objects.list",
  ]
}

# Replicators land (staging/), finalize (logs/: data files, manifests, _SUCCESS) and delete orphan data files.
resource "google_storage_bucket_iam_member" "replicator_objects" {
  for_each = local.tiers

  bucket = google_storage_bucket.landing.name
  role   = google_project_iam_custom_role.landing_objects.name
  member = "serviceAccount:${module.tier[each.key].replicator_service_account}"
}

# Loaders read staging/ and logs/ (their load jobs read gs:// URIs as the loader) and create and delete their
# bookkeeping under bq/.
resource "google_storage_bucket_iam_member" "loader_objects" {
  for_each = local.tiers

  bucket = google_storage_bucket.landing.name
  role   = google_project_iam_custom_role.landing_objects.name
  member = "serviceAccount:${module.tier[each.key].loader_service_account}"
}
