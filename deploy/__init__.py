"""deploy/: casebridge beyond one machine; local_cluster runs its files on loopback (deploy/README.md)."""
