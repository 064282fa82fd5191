//! The integration tests that can share one process, as one binary (built and linked once):
//! each file is a module. Tests that read process-wide metric values, install a global
//! subscriber, or stop and freeze the shared RabbitMQ or CQL server stay in their own binaries
//! beside this folder (tests/*.rs), which cargo runs one after another.

#[path = "../common/mod.rs"]
mod common;

mod admin_port;
mod batch_ids;
mod bus_contract;
mod cli;
mod config_files;
mod deploy;
mod drain;
mod e2e;
mod embedded_dedup;
mod eval;
mod fuzz_ingest;
mod incidents;
mod kill;
mod metrics_doc;
mod monitoring;
mod probe;
mod query_limits;
mod rate_limit;
mod reload;
mod scylla;
mod sqlite_migration;
mod stamp;
mod store_contract;
mod store_outage;
mod supervision;
mod uplink;
