# The root module with the real catalog.yaml, planned through mock providers: one tier module per catalog tier, one
# table per category, the bucket's protections, identities and alerts.

mock_provider "google" {
  mock_data "google_project" {
    defaults = {
      number = "123456789012"
    }
  }
}

mock_provider "kubernetes" {}

variables {
  project_id       = "my-proj-123"
  region           = "europe-west1"
  replicator_image = "europe-docker.pkg.dev/my-proj-123/logpipe/logpipe:0.1.0"
}

run "everything_comes_from_the_catalog" {
  command = plan

  assert {
    condition     = toset(keys(module.tier)) == toset([for t in yamldecode(file("${path.module}/catalog.yaml")).tiers : t.name])
    error_message = "There must be exactly one tier module per catalog tier."
  }
  assert {
    condition     = toset(keys(module.bigquery_category)) == toset([for c in yamldecode(file("${path.module}/catalog.yaml")).categories : c.name])
    error_message = "There must be exactly one table per catalog category."
  }
  assert {
    condition     = toset(keys(module.replicator)) == toset(keys(module.tier))
    error_message = "There must be one replicator deployment per tier."
  }
  assert {
    condition     = output.topics["core"] == "logpipe-core" && output.subscriptions["bulk"] == "logpipe-bulk-replicator"
    error_message = "Output names must follow service/catalog.py."
  }
  assert {
    condition     = toset(keys(module.bigquery_fresh)) == toset([for c in yamldecode(file("${path.module}/catalog.yaml")).categories : c.tier])
    error_message = "There must be one fresh table per tier that has categories."
  }
  assert {
    condition     = output.tables["ads_click"] == "ads_click" && output.committed_tables["ads_click"] == "ads_click__committed"
    error_message = "Users query <category>; the committed data lives in <category>__committed."
  }
  assert {
    condition     = google_bigquery_dataset.logs.dataset_id == yamldecode(file("${path.module}/catalog.yaml")).dataset
    error_message = "The dataset is the catalog's dataset."
  }
  assert {
    condition     = kubernetes_config_map_v1.catalog.data["catalog.yaml"] == file("${path.module}/catalog.yaml")
    error_message = "The replicators must receive the very catalog Terraform read."
  }
}

run "bucket_is_private_and_cleans_staging" {
  command = plan

  assert {
    condition     = google_storage_bucket.landing.uniform_bucket_level_access == true && google_storage_bucket.landing.public_access_prevention == "enforced"
    error_message = "The landing bucket needs uniform bucket-level access and enforced public access prevention."
  }
  assert {
    condition = anytrue([
      for r in google_storage_bucket.landing.lifecycle_rule :
      r.action[0].type == "Delete" && r.condition[0].age == 30 && r.condition[0].matches_prefix == tolist(["staging/"])
    ])
    error_message = "staging/ objects must be deleted after 30 days by default."
  }
  assert {
    condition     = length(google_storage_bucket.landing.retention_policy) == 0
    error_message = "No retention policy: logpipe deletes young objects."
  }
  assert {
    condition     = google_storage_bucket.landing.name == "my-proj-123-logpipe-landing"
    error_message = "Default bucket name is <project>-<prefix>-landing."
  }
}

run "bucket_options" {
  command = plan
  variables {
    staging_retention_days = 40
  }

  assert {
    condition     = google_storage_bucket.landing.lifecycle_rule[0].condition[0].age == 40
    error_message = "staging_retention_days must drive the staging/ lifecycle rule."
  }
}

run "staging_must_outlive_message_retention_and_lateness" {
  command = plan
  variables {
    # The shipped catalog's core tier keeps messages 7 days; 7 days + 1 h + lateness needs 8.
    staging_retention_days = 7
  }
  expect_failures = [google_storage_bucket.landing]
}

run "staging_retention_just_long_enough" {
  command = plan
  variables {
    staging_retention_days = 8
  }

  assert {
    condition     = google_storage_bucket.landing.lifecycle_rule[0].condition[0].age == 8
    error_message = "8 days outlive the shipped catalog's 7-day message retention + 1 h + lateness."
  }
}

run "fresh_horizon_beyond_the_loaders_backfill_is_refused" {
  command = plan
  variables {
    bigquery_fresh_horizon_hours = 193
  }
  expect_failures = [var.bigquery_fresh_horizon_hours]
}

run "bucket_retention_policy_is_refused" {
  command = plan
  variables {
    bucket_retention_period_seconds = 2592000
  }
  expect_failures = [var.bucket_retention_period_seconds]
}

run "iam_members_are_the_intended_service_accounts" {
  command = apply

  assert {
    condition = (
      toset(google_project_iam_custom_role.landing_objects.permissions) == toset(["storage.objects.create", "storage.objects.delete", "storage.objects.get", "storage.objects.list"]) &&
      google_project_iam_custom_role.landing_objects.role_id == "logpipe_landing_objects"
    )
    error_message = "The landing bucket's role grants exactly object create/get/list/delete."
  }
  assert {
    condition = alltrue([
      for t, m in google_storage_bucket_iam_member.replicator_objects :
      m.member == "serviceAccount:${output.service_accounts.replicators[t]}" && m.role == google_project_iam_custom_role.landing_objects.name && m.bucket == output.bucket
    ]) && length(google_storage_bucket_iam_member.replicator_objects) == length(module.tier)
    error_message = "Each tier's replicator gets the landing-objects role on the landing bucket only."
  }
  assert {
    condition = alltrue([
      for t, m in google_storage_bucket_iam_member.loader_objects :
      m.member == "serviceAccount:${output.service_accounts.loaders[t]}" && m.role == google_project_iam_custom_role.landing_objects.name && m.bucket == output.bucket
    ]) && length(google_storage_bucket_iam_member.loader_objects) == length(module.tier)
    error_message = "Each tier's loader gets the landing-objects role on the landing bucket only."
  }
  assert {
    condition = alltrue([
      for t, m in google_bigquery_dataset_iam_member.loader_data_editor :
      m.member == "serviceAccount:${output.service_accounts.loaders[t]}" && m.role == "roles/bigquery.dataEditor" && m.dataset_id == output.dataset
    ]) && length(google_bigquery_dataset_iam_member.loader_data_editor) == length(module.tier)
    error_message = "Each tier's loader (not its replicator) gets dataEditor on the dataset only."
  }
  assert {
    condition = alltrue([
      for t, m in google_project_iam_member.loader_job_user :
      m.member == "serviceAccount:${output.service_accounts.loaders[t]}" && m.role == "roles/bigquery.jobUser"
    ]) && length(google_project_iam_member.loader_job_user) == length(module.tier)
    error_message = "roles/bigquery.jobUser is the loaders' only project-level role."
  }
  assert {
    condition     = length(distinct(concat(values(output.service_accounts.replicators), values(output.service_accounts.loaders)))) == 2 * length(module.tier)
    error_message = "Each tier has its own replicator and its own loader service account."
  }
  assert {
    condition     = alltrue([for t, m in module.replicator : m.kubernetes_service_account == "logpipe-replicator-${t}" && m.loader_kubernetes_service_account == "logpipe-loader-${t}"])
    error_message = "Each tier's replicator and loader run under their own Kubernetes service accounts."
  }
}

run "workload_identity_federation_is_off_by_default" {
  command = plan

  assert {
    condition     = length(module.workload_identity) == 0 && output.workload_identity_provider == null
    error_message = "Workload Identity Federation must be off unless enabled."
  }
}

run "workload_identity_federation_oidc" {
  command = apply
  variables {
    workload_identity_federation = {
      enabled         = true
      provider_type   = "oidc"
      oidc_issuer_uri = "https://sso.example.com"
      principals      = ["frontend-1", "frontend-2"]
    }
  }

  assert {
    condition     = length(module.workload_identity) == 1 && output.workload_identity_provider != null
    error_message = "Enabling federation creates the pool provider."
  }
  assert {
    condition     = length(module.workload_identity[0].members) == 2 && alltrue([for m in module.workload_identity[0].members : startswith(m, "principal://iam.googleapis.com/")])
    error_message = "Each OIDC subject is bound individually, never the whole pool."
  }
}

run "workload_identity_federation_needs_principals" {
  command = plan
  variables {
    workload_identity_federation = {
      enabled         = true
      provider_type   = "oidc"
      oidc_issuer_uri = "https://sso.example.com"
    }
  }
  expect_failures = [var.workload_identity_federation]
}

run "aws_federation_needs_an_account" {
  command = plan
  variables {
    workload_identity_federation = {
      enabled       = true
      provider_type = "aws"
      principals    = ["arn:aws:iam::123456789012:role/logpipe-frontend"]
    }
  }
  expect_failures = [var.workload_identity_federation]
}

run "variables_are_validated" {
  command = plan
  variables {
    project_id             = "X"
    staging_retention_days = 0
    replicator_image       = "logpipe"
    notification_channels  = ["oncall"]
  }
  expect_failures = [var.project_id, var.staging_retention_days, var.replicator_image, var.notification_channels]
}

run "four_alerts_per_tier" {
  command = plan
  variables {
    notification_channels = ["projects/my-proj-123/notificationChannels/42"]
  }

  assert {
    condition = alltrue([for a in [
      google_monitoring_alert_policy.oldest_unacked, google_monitoring_alert_policy.dead_letters,
      google_monitoring_alert_policy.replicator_errors, google_monitoring_alert_policy.finalize_failing,
    ] : length(a) == length(module.tier)])
    error_message = "Each tier has a backlog-age, a dead-letter, a replicator-error and a finalization alert."
  }
  assert {
    condition = (
      strcontains(google_logging_metric.finalize_failures.filter, "jsonPayload.logger=\"replicator.finalize\"") &&
      strcontains(google_logging_metric.finalize_failures.filter, "finalizer pass failed") &&
      strcontains(google_monitoring_alert_policy.finalize_failing["core"].conditions[0].condition_threshold[0].filter, google_logging_metric.finalize_failures.name) &&
      google_monitoring_alert_policy.finalize_failing["core"].conditions[0].condition_threshold[0].duration == "3600s"
    )
    error_message = "The finalization alert fires on finalizer failures logged throughout an hour."
  }
  assert {
    condition     = strcontains(google_logging_metric.replicator_errors.filter, "severity>=ERROR")
    error_message = "The error metric counts ERROR entries (the pods log JSON with a severity, LOGPIPE_LOG_FORMAT=json)."
  }
  assert {
    condition     = strcontains(google_monitoring_alert_policy.oldest_unacked["core"].conditions[0].condition_threshold[0].filter, "subscription/oldest_unacked_message_age") && strcontains(google_monitoring_alert_policy.oldest_unacked["core"].conditions[0].condition_threshold[0].filter, "\"logpipe-core-replicator\"")
    error_message = "The backlog alert watches the tier subscription's oldest unacked message age."
  }
  assert {
    condition     = strcontains(google_monitoring_alert_policy.dead_letters["bulk"].conditions[0].condition_threshold[0].filter, "\"logpipe-bulk-dead-letter\"")
    error_message = "The dead-letter alert watches the tier's dead-letter topic."
  }
  assert {
    condition     = google_monitoring_alert_policy.replicator_errors["core"].notification_channels == tolist(["projects/my-proj-123/notificationChannels/42"])
    error_message = "Alerts notify the configured channels."
  }
}
