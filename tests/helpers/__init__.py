"""Shared test helpers (real Chromium profiles, local servers). Not tests themselves."""
