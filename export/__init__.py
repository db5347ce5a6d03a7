"""SavedModels that TF Serving loads, and the `sports1m-predict` client."""
