# Front-end identity and optional Workload Identity Federation. Replicator identities live in modules/tier (one
# service account per tier, so a tier's credentials reach only that tier's subscription).

resource "google_service_account" "frontend" {
  project      = var.project_id
  account_id   = "${local.name_prefix}-frontend"
  display_name = "logpipe front-ends"
  description  = "Ingestion front-ends: publish envelopes to the tier topics, nothing else."
}

module "workload_identity" {
  source = "./modules/workload_identity"
  count  = var.workload_identity_federation.enabled ? 1 : 0

  project_id             = var.project_id
  pool_id                = var.workload_identity_federation.pool_id
  provider_type          = var.workload_identity_federation.provider_type
  oidc_issuer_uri        = var.workload_identity_federation.oidc_issuer_uri
  oidc_allowed_audiences = var.workload_identity_federation.oidc_allowed_audiences
  aws_account_id         = var.workload_identity_federation.aws_account_id
  attribute_condition    = var.workload_identity_federation.attribute_condition
  principals             = var.workload_identity_federation.principals
  service_account_name   = google_service_account.frontend.name
}
