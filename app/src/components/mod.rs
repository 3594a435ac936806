//! Reusable pieces of the UI: the signed-in shell, form controls, the theme
//! toggle, status badges, environment-grouped lists, live logs, the backups panel and
//! the keyboard focus kept through a page's rebuilds.

pub mod backups;
pub mod chart;
pub mod focus;
pub mod live;
pub mod logview;
pub mod notify;
pub mod resources;
pub mod shell;
pub mod status;
pub mod theme;
pub mod ui;
