output "pool_name" {
  description = "Full resource name of the workload identity pool."
  value       = google_iam_workload_identity_pool.this.name
}

output "provider_name" {
  description = "Full resource name of the pool provider; front-ends put it in their credential configuration file."
  value       = google_iam_workload_identity_pool_provider.this.name
}

output "members" {
  description = "IAM members granted roles/iam.workloadIdentityUser on the front-end service account."
  value       = values(local.members)
}
