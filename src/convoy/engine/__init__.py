"""The embedded engine: runs sessions durably on a store."""
