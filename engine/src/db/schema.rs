//! Diesel's view of the tables in `migrations/`. Kept by hand (no diesel CLI in
//! the build); the migration test in `tests/db.rs` fails if the two disagree.

diesel::table! {
    instance (singleton) {
        singleton -> Bool,
        onboarded_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        email -> Text,
        name -> Text,
        password_hash -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    organizations (id) {
        id -> Uuid,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    memberships (organization_id, user_id) {
        organization_id -> Uuid,
        user_id -> Uuid,
        role -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    invites (id) {
        id -> Uuid,
        organization_id -> Uuid,
        token_hash -> Text,
        role -> Text,
        created_by -> Uuid,
        expires_at -> Timestamptz,
        accepted_by -> Nullable<Uuid>,
        accepted_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    projects (id) {
        id -> Uuid,
        organization_id -> Uuid,
        name -> Text,
        description -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    environments (id) {
        id -> Uuid,
        project_id -> Uuid,
        organization_id -> Uuid,
        name -> Text,
        protected -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::joinable!(memberships -> organizations (organization_id));
diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(environments -> projects (project_id));
diesel::joinable!(projects -> organizations (organization_id));
diesel::joinable!(invites -> organizations (organization_id));

diesel::allow_tables_to_appear_in_same_query!(
    instance,
    users,
    organizations,
    memberships,
    invites,
    projects,
    environments,
);
