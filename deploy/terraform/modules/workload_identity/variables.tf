variable "project_id" {
  description = "Google Cloud project that holds the workload identity pool."
  type        = string
}

variable "pool_id" {
  description = "Id of the workload identity pool (4-32 characters of [a-z0-9-])."
  type        = string
}

variable "provider_type" {
  description = "Where on-premises front-ends get their credentials: \"oidc\" (any OIDC issuer) or \"aws\"."
  type        = string
  validation {
    condition     = contains(["oidc", "aws"], var.provider_type)
    error_message = "provider_type must be \"oidc\" or \"aws\"."
  }
}

variable "oidc_issuer_uri" {
  description = "OIDC issuer URL (provider_type = \"oidc\")."
  type        = string
  default     = null
}

variable "oidc_allowed_audiences" {
  description = "Audiences accepted in OIDC tokens; empty means the provider's default audience."
  type        = list(string)
  default     = []
}

variable "aws_account_id" {
  description = "AWS account whose roles may federate (provider_type = \"aws\")."
  type        = string
  default     = null
}

variable "attribute_condition" {
  description = "CEL condition every federated credential must satisfy; null accepts every token of the issuer/account."
  type        = string
  default     = null
}

variable "principals" {
  description = "Who may act as the front-end service account: OIDC subjects (provider_type oidc) or AWS role ARNs (aws)."
  type        = list(string)
}

variable "service_account_name" {
  description = "Resource name (projects/P/serviceAccounts/EMAIL) of the service account the principals impersonate."
  type        = string
}
