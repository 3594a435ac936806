//! Accepting an invite link: join as the signed-in user, or create an account.

use super::login::AuthCard;
use crate::api::orgs::{preview_invite, AcceptInvite};
use crate::components::ui::{action_error, hard_navigate, Field, FormError, LoadError, Loading, Submit};
use leptos::form::ActionForm;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

#[component]
pub fn InvitePage() -> impl IntoView {
    let params = use_params_map();
    let token = move || params.read().get("token").unwrap_or_default();
    let preview = Resource::new(token, preview_invite);
    let accept = ServerAction::<AcceptInvite>::new();
    let error = action_error(accept);
    Effect::new(move |_| {
        if let Some(Ok(())) = accept.value().get() {
            hard_navigate("/projects");
        }
    });
    view! {
        <AuthCard title="Join an organization">
            <Suspense fallback=|| view! { <Loading /> }>
                {move || Suspend::new(async move {
                    match preview.await {
                        Err(e) => view! { <LoadError error=e /> }.into_any(),
                        Ok(p) => view! {
                            <p class="mb-4 text-sm">
                                "You are invited to " <strong>{p.org_name}</strong> " as " <strong>{p.role}</strong> "."
                            </p>
                            <ActionForm action=accept attr:class="space-y-4">
                                <input type="hidden" name="token" value=token() />
                                <Show when=move || !p.signed_in>
                                    <Field label="Your name" name="name" error />
                                    <Field label="Email" name="email" kind="email" error />
                                    <Field label="Password (at least 10 characters)" name="password" kind="password" error />
                                    <p class="text-xs text-slate-500">
                                        "Already have an account? " <a class="text-indigo-700 underline dark:text-indigo-300" href="/login">"Sign in"</a> " first, then open this link again."
                                    </p>
                                </Show>
                                <FormError error />
                                <Submit label="Accept invite" pending=accept.pending() id="accept-invite" />
                            </ActionForm>
                        }.into_any(),
                    }
                })}
            </Suspense>
        </AuthCard>
    }
}
