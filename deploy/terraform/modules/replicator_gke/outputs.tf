output "deployment" {
  description = "Name of the tier's replicator Deployment."
  value       = kubernetes_deployment_v1.replicator.metadata[0].name
}

output "kubernetes_service_account" {
  description = "Kubernetes service account the replicator pods run as."
  value       = kubernetes_service_account_v1.replicator.metadata[0].name
}

output "loader_deployment" {
  description = "Name of the tier's BigQuery loader Deployment."
  value       = kubernetes_deployment_v1.loader.metadata[0].name
}

output "loader_kubernetes_service_account" {
  description = "Kubernetes service account the loader pod runs as."
  value       = kubernetes_service_account_v1.loader.metadata[0].name
}
