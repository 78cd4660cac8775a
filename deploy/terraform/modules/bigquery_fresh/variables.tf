variable "project_id" {
  description = "Google Cloud project of the dataset."
  type        = string
}

variable "dataset_id" {
  description = "Dataset that holds the fresh table (the catalog's dataset)."
  type        = string
}

variable "tier" {
  description = "Tier whose categories share this fresh table."
  type        = string
}

variable "horizon_hours" {
  description = "How far back the category views show fresh rows; partitions expire a day after that."
  type        = number
}

variable "deletion_protection" {
  description = "Refuse to let Terraform delete the table."
  type        = bool
}

variable "labels" {
  description = "Labels put on the table."
  type        = map(string)
}
