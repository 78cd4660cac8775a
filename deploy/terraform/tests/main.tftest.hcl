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
      r.action[0].type == "Delete" && r.condition[0].age == 7 && r.condition[0].matches_prefix == tolist(["staging/"])
    ])
    error_message = "staging/ objects must be deleted after 7 days by default."
  }
  assert {
    condition     = length(google_storage_bucket.landing.retention_policy) == 0
    error_message = "No retention policy unless asked for."
  }
  assert {
    condition     = google_storage_bucket.landing.name == "my-proj-123-logpipe-landing"
    error_message = "Default bucket name is <project>-<prefix>-landing."
  }
}

run "bucket_options" {
  command = plan
  variables {
    staging_retention_days          = 3
    bucket_retention_period_seconds = 86400
  }

  assert {
    condition     = google_storage_bucket.landing.lifecycle_rule[0].condition[0].age == 3
    error_message = "staging_retention_days must drive the staging/ lifecycle rule."
  }
  assert {
    condition     = google_storage_bucket.landing.retention_policy[0].retention_period == 86400
    error_message = "bucket_retention_period_seconds must set a retention policy."
  }
}

run "iam_members_are_the_intended_service_accounts" {
  command = apply

  assert {
    condition = alltrue([
      for t, m in google_storage_bucket_iam_member.replicator_object_admin :
      m.member == "serviceAccount:${output.service_accounts.replicators[t]}" && m.role == "roles/storage.objectAdmin"
    ]) && length(google_storage_bucket_iam_member.replicator_object_admin) == length(module.tier)
    error_message = "Each tier's replicator (and only it) gets objectAdmin on the landing bucket."
  }
  assert {
    condition = alltrue([
      for t, m in google_bigquery_dataset_iam_member.replicator_data_editor :
      m.member == "serviceAccount:${output.service_accounts.replicators[t]}" && m.role == "roles/bigquery.dataEditor" && m.dataset_id == output.dataset
    ])
    error_message = "Each tier's replicator gets dataEditor on the dataset only."
  }
  assert {
    condition = alltrue([
      for t, m in google_project_iam_member.replicator_job_user :
      m.member == "serviceAccount:${output.service_accounts.replicators[t]}" && m.role == "roles/bigquery.jobUser"
    ])
    error_message = "roles/bigquery.jobUser is the replicators' only project-level role."
  }
  assert {
    condition     = length(distinct(values(output.service_accounts.replicators))) == length(module.tier)
    error_message = "Each tier has its own replicator service account."
  }
  assert {
    condition     = alltrue([for t, m in module.replicator : m.kubernetes_service_account == "logpipe-replicator-${t}"])
    error_message = "Each tier's replicator runs under its own Kubernetes service account."
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

run "three_alerts_per_tier" {
  command = plan
  variables {
    notification_channels = ["projects/my-proj-123/notificationChannels/42"]
  }

  assert {
    condition     = length(google_monitoring_alert_policy.oldest_unacked) == length(module.tier) && length(google_monitoring_alert_policy.dead_letters) == length(module.tier) && length(google_monitoring_alert_policy.replicator_errors) == length(module.tier)
    error_message = "Each tier has a backlog-age, a dead-letter and a replicator-error alert."
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
