"""bench: metrics under the papers' protocols, run over methods, with provenance."""
