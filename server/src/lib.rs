//! The `berth` server: configuration, process state, the axum router with its
//! middleware, and the plain HTTP routes. Pages and server functions come from
//! the `app` crate; the domain lives in `engine`.

pub mod admission;
pub mod audit;
pub mod config;
pub mod error;
pub mod hooks;
pub mod hosts;
pub mod live;
pub mod middleware;
pub mod prometheus;
pub mod recorder;
pub mod rest;
pub mod router;
pub mod routes;
pub mod sockets;
pub mod state;

pub use router::router;
pub use state::AppState;
