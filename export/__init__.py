"""SavedModels that TF Serving loads (docs/design.md), and the `sports1m-predict` client."""
