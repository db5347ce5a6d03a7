"""SavedModels that TF Serving loads (SPEC §7), and the `sports1m-predict` client."""
