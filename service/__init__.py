"""logpipe ingestion tier: the contract's generated code, the catalog, the front-end, the SDK and the local cloud.

Data flows proto/ -> service/ (ingest) -> replicator/ (land, finalize, load) -> deploy/terraform/ (the cloud).
"""
