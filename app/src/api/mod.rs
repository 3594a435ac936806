//! Server functions: the UI's only door to the engine. Each gets the caller,
//! parses its inputs into validated types, calls one engine function and maps
//! the result. Endpoints are fixed (`/api/<endpoint>`) so tests and scripts can
//! call them; the cross-organization test enumerates them all.

pub mod apps;
#[cfg(feature = "ssr")]
pub mod edge;
pub mod instance;
pub mod orgs;
pub mod projects;
pub mod services;
pub mod session;
