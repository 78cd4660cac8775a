"""End-to-end tooling: the demo workload, reconciliation of acked vs landed vs queried, and the chaos orchestrator."""
