//! Multi-host runs over SSH (docs/multi-host.md): the system's `ssh` reaches each host
//! (`ssh`: connection sharing, the version check, the binary's copy, a wrapped command
//! as a [`ssh::Session`]), and the hidden `remote-wrap` subcommand (`wrap`) runs there
//! around each server and client: its process group, its CPU pinning (`cpus`), its CPU
//! samples, and its death when the runner goes away.

pub(crate) mod cpus;
pub(crate) mod ssh;
pub(crate) mod wrap;

pub(crate) use wrap::run as run_wrapper;
