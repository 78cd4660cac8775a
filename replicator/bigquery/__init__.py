"""BigQuery loading: committed partitions and a fresh path, behind one deduplicating view per category.

Read in this order (the data's path):
  * ``names``      table, object and job names; all pure functions.
  * ``schema``     the table schemas from the catalog, and the compatibility check for schema evolution.
  * ``views``      the SQL of the user-facing view ``<dataset>.<category>``.
  * ``tables``     ``ensure_tables(bq_client, catalog)``: idempotent provisioning and schema evolution.
  * ``jobs``       ``LoadRunner``: load jobs with deterministic ids, 409 handling and bounded retries.
  * ``fresh_rows`` the tier-wide fresh table's row format (Avro).
  * ``hours``      UTC days and hours of the windows, and which hours are complete (``_SUCCESS``).
  * ``committed``  loads committed manifests into ``<category>__committed``.
  * ``fresh_convert`` turns staging objects into the fresh path's Avro files, ahead of loading.
  * ``fresh``      batches the open hours' staging objects into the tier's ``_fresh_<tier>`` table.
  * ``loader``     ``LoaderConfig`` and ``run_loader(config, stop_event)``: the loop that runs both.
The design and its arithmetic are in docs/design.md ("BigQuery loading"); the user guide is docs/bigquery.md.
"""
