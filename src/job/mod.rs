//! `missions job`: one turn of one role inside an Actions job.

pub mod prompts;
