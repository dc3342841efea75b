"""Letters, typeset and verified."""
