"""Hydra config groups shipped with forge-launcher (backend/, storage/)."""
