"""HTTP controllers: thin handlers that validate, call one service and return a schema."""
