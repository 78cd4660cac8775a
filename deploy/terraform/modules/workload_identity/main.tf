# Workload Identity Federation for on-premises front-ends: they exchange a token from their own identity provider
# (OIDC or AWS) for short-lived Google credentials of the front-end service account. No service account keys.

locals {
  oidc_mapping = {
    "google.subject" = "assertion.sub"
  }
  # Google's documented mapping for AWS: the role of an assumed-role session, so a role ARN can be granted.
  aws_mapping = {
    "google.subject"     = "assertion.arn"
    "attribute.aws_role" = "assertion.arn.contains('assumed-role') ? assertion.arn.extract('{account_arn}assumed-role/') + 'assumed-role/' + assertion.arn.extract('assumed-role/{role_name}/') : assertion.arn"
  }
  pool_name = google_iam_workload_identity_pool.this.name
  # Keyed by principal so for_each keys are known at plan time (the pool's name is not).
  members = {
    for p in var.principals : p => var.provider_type == "oidc"
    ? "principal://iam.googleapis.com/${local.pool_name}/subject/${p}"
    : "principalSet://iam.googleapis.com/${local.pool_name}/attribute.aws_role/${p}"
  }
}

resource "google_iam_workload_identity_pool" "this" {
  project                   = var.project_id
  workload_identity_pool_id = var.pool_id
  display_name              = "logpipe front-ends"
  description               = "On-premises logpipe front-ends federate here instead of using service account keys."
}

resource "google_iam_workload_identity_pool_provider" "this" {
  project                            = var.project_id
  workload_identity_pool_id          = google_iam_workload_identity_pool.this.workload_identity_pool_id
  workload_identity_pool_provider_id = "${var.pool_id}-${var.provider_type}"
  display_name                       = "logpipe ${var.provider_type}"
  attribute_mapping                  = var.provider_type == "oidc" ? local.oidc_mapping : local.aws_mapping
  attribute_condition                = var.attribute_condition

  dynamic "oidc" {
    for_each = var.provider_type == "oidc" ? [1] : []
    content {
      issuer_uri        = var.oidc_issuer_uri
      allowed_audiences = var.oidc_allowed_audiences
    }
  }

  dynamic "aws" {
    for_each = var.provider_type == "aws" ? [1] : []
    content {
      account_id = var.aws_account_id
    }
  }
}

resource "google_service_account_iam_member" "workload_identity_user" {
  for_each = toset(var.principals)

  service_account_id = var.service_account_name
  role               = "roles/iam.workloadIdentityUser"
  member             = local.members[each.key]
}
