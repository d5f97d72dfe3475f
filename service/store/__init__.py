"""The resource store: persistence, versioning and search indexes. It knows no HTTP."""
