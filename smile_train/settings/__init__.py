"""What a run is told: the settings dataclasses of every command, their checks and their one-line meanings (YAML and --set resolve into these)."""
