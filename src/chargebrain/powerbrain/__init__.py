"""powerbrain package."""
