//! One module per page. Pages compose components and call server functions.

pub mod app;
pub mod invite;
pub mod login;
pub mod not_found;
pub mod onboarding;
pub mod project;
pub mod projects;
pub mod service;
pub mod settings;
