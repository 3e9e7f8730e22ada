//! The orchestrator's domain: jobs and their state machine, collaborative tasks, ETags.

pub mod etag;
pub mod events;
pub mod jobs;
