//! First run: create the owner account and their organization. Once an owner
//! exists this page sends visitors to sign-in, and the server refuses the call.

use super::login::AuthCard;
use crate::api::session::{get_session_state, Onboard};
use crate::components::ui::{action_error, hard_navigate, Field, FormError, Submit};
use crate::types::SessionState;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::components::Redirect;
use leptos_router::hooks::use_query_map;

#[component]
pub fn OnboardingPage() -> impl IntoView {
    let state = Resource::new(|| (), |_| get_session_state());
    let onboard = ServerAction::<Onboard>::new();
    let error = action_error(onboard);
    // The link Berth prints at start carries the token: `/onboarding?token=…`.
    let token = use_query_map().get_untracked().get("token").unwrap_or_default();
    Effect::new(move |_| {
        if let Some(Ok(())) = onboard.value().get() {
            hard_navigate("/projects");
        }
    });
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match state.await {
                    Ok(SessionState::Onboarding) | Err(_) => ().into_any(),
                    Ok(_) => view! { <Redirect path="/login" /> }.into_any(),
                }
            })}
        </Suspense>
        <AuthCard title="Welcome to Berth">
            <p class="mb-4 text-sm text-slate-500">"Create the owner account and your organization. The setup token is in Berth's log: it proves you run this server."</p>
            <ActionForm action=onboard attr:class="space-y-4" attr:id="onboarding-form">
                <Field label="Setup token" name="setup_token" value=token error />
                <Field label="Your name" name="name" autocomplete="name" error />
                <Field label="Email" name="email" kind="email" autocomplete="username" error />
                <Field label="Password (at least 10 characters)" name="password" kind="password" autocomplete="new-password" error />
                <Field label="Organization" name="organization" error />
                <FormError error />
                <Submit label="Create owner account" pending=onboard.pending() id="onboarding-submit" />
            </ActionForm>
        </AuthCard>
    }
}
