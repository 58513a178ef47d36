"""Renderers: one plan object shown as text, JSON or markdown (pure functions, strings out)."""
