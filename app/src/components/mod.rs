//! Reusable pieces of the UI: the signed-in shell, form controls, the theme toggle.

pub mod logview;
pub mod shell;
pub mod status;
pub mod theme;
pub mod ui;
