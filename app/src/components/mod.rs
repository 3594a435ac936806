//! Reusable pieces of the UI: the signed-in shell, form controls, the theme
//! toggle, status badges, environment-grouped lists, live logs and the backups panel.

pub mod backups;
pub mod chart;
pub mod live;
pub mod logview;
pub mod notify;
pub mod resources;
pub mod shell;
pub mod status;
pub mod theme;
pub mod ui;
