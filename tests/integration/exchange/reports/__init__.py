"""Reports and the DPO's queries."""
