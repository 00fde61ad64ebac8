//! iptables rulesets: read as iptables reads them, evaluated in the kernel's hooks, printed
//! back as `iptables-save` prints them.
//!
//! [`load`](load()) reads `iptables-save`/`ip6tables-save` output (the `iptables-restore` format)
//! or a shell script of `iptables …` commands into [`FamilyRules`]: tables of chains of
//! [`Rule`]s, each a [`RuleSpec`] of base options, [`Match`]es and a [`Target`].
//! [`FamilyRules::save`] prints the canonical form, byte for byte what `iptables-save`
//! prints after `iptables-restore` of the same file (table order aside, which depends on the
//! host). Errors name the file, the line and the option, like `iptables-restore`.
//! An unknown or unsupported match or target is refused by name, never ignored.

pub mod addr;
pub mod args;
pub mod ctx;
pub mod error;
pub mod lex;
pub mod load;
pub mod log;
pub mod matches;
pub mod model;
mod prefilter;
pub mod target;

pub use error::RulesError;
pub use load::{load, load_as};
pub use matches::Match;
pub use model::{Backend, Chain, Counters, FamilyRules, Rule, RuleSpec, Table};
pub use target::{RejectWith, Target};

pub mod eval;

pub use eval::{Decision, Effects, NatAction, Replay, Ruleset, TRACE_HITS};
