//! HTTP as Plexus routers speak it (placeholder while the crate lands).
