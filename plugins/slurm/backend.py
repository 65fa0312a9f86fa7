"""Work in progress: filled in by the plugin's own change."""
