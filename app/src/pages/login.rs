//! Sign-in with email and password.

use crate::api::session::{get_session_state, Login, LoginCode};
use crate::components::ui::{action_error, hard_navigate, Field, FormError, Submit, CARD};
use crate::types::SessionState;
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::components::Redirect;

/// The centred card that frames the signed-out pages.
#[component]
pub fn AuthCard(title: &'static str, children: Children) -> impl IntoView {
    view! {
        <main class="flex min-h-screen items-center justify-center p-4">
            <div class=format!("{CARD} w-full max-w-md")>
                <p class="text-lg font-bold text-indigo-600 dark:text-indigo-400">"⚓ Berth"</p>
                <h1 class="mt-2 text-2xl font-semibold">{title}</h1>
                <div class="mt-6">{children()}</div>
            </div>
        </main>
    }
}

#[component]
pub fn LoginPage() -> impl IntoView {
    let state = Resource::new(|| (), |_| get_session_state());
    let login = ServerAction::<Login>::new();
    let code = ServerAction::<LoginCode>::new();
    let error = action_error(login);
    let code_error = action_error(code);
    // The password step's answer: signed in, or a challenge for the code.
    let challenge = move || login.value().get().and_then(|r| r.ok()).flatten();
    Effect::new(move |_| {
        if let Some(Ok(None)) = login.value().get() {
            hard_navigate("/projects");
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(())) = code.value().get() {
            hard_navigate("/projects");
        }
    });
    view! {
        <Suspense fallback=|| ()>
            {move || Suspend::new(async move {
                match state.await {
                    Ok(SessionState::Onboarding) => view! { <Redirect path="/onboarding" /> }.into_any(),
                    Ok(SessionState::SignedIn(_)) => view! { <Redirect path="/projects" /> }.into_any(),
                    _ => ().into_any(),
                }
            })}
        </Suspense>
        <AuthCard title="Sign in">
            <Show
                when=move || challenge().is_some()
                fallback=move || view! {
                    <ActionForm action=login attr:class="space-y-4" attr:id="login-form">
                        <Field label="Email" name="email" kind="email" autocomplete="username" error />
                        <Field label="Password" name="password" kind="password" autocomplete="current-password" error />
                        <FormError error />
                        <Submit label="Sign in" pending=login.pending() id="login-submit" />
                    </ActionForm>
                }
            >
                <ActionForm action=code attr:class="space-y-4" attr:id="code-form">
                    <p class="text-sm">"Enter the 6-digit code from your authenticator app, or one of your recovery codes."</p>
                    <input type="hidden" name="challenge" value=move || challenge().unwrap_or_default() />
                    <Field label="Code" name="code" autocomplete="one-time-code" error=code_error />
                    <FormError error=code_error />
                    <Submit label="Verify" pending=code.pending() id="code-submit" />
                </ActionForm>
            </Show>
        </AuthCard>
    }
}
