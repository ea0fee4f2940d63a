"""The plumbing below every stage: the user-error type, atomic writes and hashing, manifests, provenance,
identifiers and safe paths, progress bars, the weights manifest. Every stage may import it; it imports no stage."""
