//! The routing table and its k-buckets.

mod bucket;
mod table;

pub(crate) use table::{Failed, Heard, IpLimits, Table};
