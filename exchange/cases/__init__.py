"""Cases: subjects, consents and the policy that reads them, documents, data keys, tenant-scoped access."""
