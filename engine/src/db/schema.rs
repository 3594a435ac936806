//! Diesel's view of the tables in `migrations/`. Kept by hand (no diesel CLI in
//! the build); the migration test in `tests/db.rs` fails if the two disagree.

diesel::table! {
    instance (singleton) {
        singleton -> Bool,
        onboarded_at -> Timestamptz,
        admin_organization_id -> Nullable<Uuid>,
        running_release -> Nullable<Text>,
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
        instance_admin -> Bool,
        totp_secret -> Nullable<Text>,
        totp_pending -> Nullable<Text>,
        totp_last_step -> Int8,
    }
}

diesel::table! {
    instance_settings (singleton) {
        singleton -> Bool,
        org_creation -> Text,
        updated_at -> Timestamptz,
        acme_directory -> Nullable<Text>,
        acme_email -> Nullable<Text>,
        dns_provider -> Nullable<Text>,
        dns_credentials -> Nullable<Text>,
        dns_resolvers -> Nullable<Text>,
        dns_skip_propagation -> Bool,
        http3 -> Bool,
    }
}

diesel::table! {
    repairs (id) {
        id -> Uuid,
        organization_id -> Nullable<Uuid>,
        application_id -> Nullable<Uuid>,
        service_id -> Nullable<Uuid>,
        problem -> Text,
        action -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    setup_tokens (token_hash) {
        token_hash -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    organizations (id) {
        id -> Uuid,
        name -> Text,
        created_at -> Timestamptz,
        require_2fa -> Bool,
    }
}

diesel::table! {
    memberships (organization_id, user_id) {
        organization_id -> Uuid,
        user_id -> Uuid,
        role -> Text,
        created_at -> Timestamptz,
        limited -> Bool,
    }
}

diesel::table! {
    project_grants (organization_id, user_id, project_id) {
        organization_id -> Uuid,
        user_id -> Uuid,
        project_id -> Uuid,
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

diesel::table! {
    applications (id) {
        id -> Uuid,
        organization_id -> Uuid,
        environment_id -> Uuid,
        name -> Text,
        description -> Text,
        source -> Jsonb,
        source_secret -> Nullable<Text>,
        build -> Jsonb,
        runtime -> Jsonb,
        webhook_secret -> Text,
        deploy_token_hash -> Text,
        deploy_token -> Text,
        live_deployment_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        legacy_names -> Bool,
        ssh_known_hosts -> Nullable<Text>,
        repo_key -> Nullable<Text>,
    }
}

diesel::table! {
    app_env_vars (application_id, name) {
        application_id -> Uuid,
        organization_id -> Uuid,
        name -> Text,
        value -> Text,
    }
}

diesel::table! {
    domains (id) {
        id -> Uuid,
        application_id -> Uuid,
        organization_id -> Uuid,
        host -> Text,
        path_prefix -> Text,
        strip_prefix -> Bool,
        port -> Nullable<Int4>,
        https -> Bool,
        generated -> Bool,
        created_at -> Timestamptz,
        cert -> Text,
        options -> Jsonb,
        cert_status -> Text,
        cert_issuer -> Nullable<Text>,
        cert_not_after -> Nullable<Timestamptz>,
        cert_error -> Nullable<Text>,
        cert_failures -> Int4,
        cert_retry_at -> Nullable<Timestamptz>,
        cert_checked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    certificates (domain_id) {
        domain_id -> Uuid,
        organization_id -> Uuid,
        chain -> Text,
        key -> Text,
        subject -> Text,
        issuer -> Text,
        not_after -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    deployments (id) {
        id -> Uuid,
        application_id -> Uuid,
        organization_id -> Uuid,
        status -> Text,
        reason -> Nullable<Text>,
        trigger -> Text,
        commit_sha -> Nullable<Text>,
        image -> Nullable<Text>,
        rollback_of -> Nullable<Uuid>,
        cancel_requested -> Bool,
        worker_id -> Nullable<Text>,
        heartbeat_at -> Nullable<Timestamptz>,
        image_pruned -> Bool,
        created_at -> Timestamptz,
        cloning_at -> Nullable<Timestamptz>,
        building_at -> Nullable<Timestamptz>,
        starting_at -> Nullable<Timestamptz>,
        health_checking_at -> Nullable<Timestamptz>,
        routing_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        superseded_at -> Nullable<Timestamptz>,
        superseded_by -> Nullable<Uuid>,
        trigger_detail -> Nullable<Text>,
    }
}

diesel::table! {
    webhook_deliveries (application_id, delivery_id) {
        application_id -> Uuid,
        delivery_id -> Text,
        deployment_id -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    database_services (id) {
        id -> Uuid,
        organization_id -> Uuid,
        environment_id -> Uuid,
        name -> Text,
        engine -> Text,
        image -> Text,
        database_name -> Nullable<Text>,
        username -> Nullable<Text>,
        password -> Text,
        volume -> Text,
        cpu_millis -> Nullable<Int4>,
        memory_mb -> Nullable<Int4>,
        external_bind -> Nullable<Text>,
        external_port -> Nullable<Int4>,
        desired -> Text,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        legacy_names -> Bool,
        root_password -> Nullable<Text>,
        redis_aof -> Bool,
    }
}

diesel::table! {
    s3_destinations (id) {
        id -> Uuid,
        organization_id -> Uuid,
        name -> Text,
        endpoint -> Text,
        region -> Text,
        bucket -> Text,
        prefix -> Text,
        access_key -> Text,
        secret_key -> Text,
        path_style -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    backup_schedules (id) {
        id -> Uuid,
        organization_id -> Uuid,
        service_id -> Nullable<Uuid>,
        destination_id -> Uuid,
        cron -> Text,
        timezone -> Text,
        keep_last -> Int4,
        drill -> Bool,
        enabled -> Bool,
        last_slot -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    backups (id) {
        id -> Uuid,
        organization_id -> Uuid,
        service_id -> Nullable<Uuid>,
        service_name -> Text,
        engine -> Text,
        destination_id -> Uuid,
        schedule_id -> Nullable<Uuid>,
        trigger -> Text,
        status -> Text,
        object_key -> Nullable<Text>,
        upload_id -> Nullable<Text>,
        size_bytes -> Int8,
        error -> Nullable<Text>,
        worker_id -> Nullable<Text>,
        heartbeat_at -> Nullable<Timestamptz>,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        pruned_at -> Nullable<Timestamptz>,
        drill_status -> Nullable<Text>,
        drill_detail -> Nullable<Text>,
        drill_worker_id -> Nullable<Text>,
        drill_heartbeat_at -> Nullable<Timestamptz>,
        drill_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    restores (id) {
        id -> Uuid,
        organization_id -> Uuid,
        backup_id -> Uuid,
        service_id -> Uuid,
        status -> Text,
        bytes -> Int8,
        error -> Nullable<Text>,
        worker_id -> Nullable<Text>,
        heartbeat_at -> Nullable<Timestamptz>,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    schedule_slots (schedule_id, slot) {
        schedule_id -> Uuid,
        slot -> Timestamptz,
        backup_id -> Nullable<Uuid>,
        missed -> Int4,
        taken_at -> Timestamptz,
    }
}

diesel::table! {
    recovery_codes (user_id, code_hash) {
        user_id -> Uuid,
        code_hash -> Bytea,
        used_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(memberships -> organizations (organization_id));
diesel::joinable!(project_grants -> projects (project_id));
diesel::joinable!(memberships -> users (user_id));
diesel::joinable!(environments -> projects (project_id));
diesel::joinable!(projects -> organizations (organization_id));
diesel::joinable!(invites -> organizations (organization_id));
diesel::joinable!(applications -> environments (environment_id));
diesel::joinable!(domains -> applications (application_id));
diesel::joinable!(app_env_vars -> applications (application_id));
diesel::joinable!(webhook_deliveries -> applications (application_id));
diesel::joinable!(database_services -> environments (environment_id));
diesel::joinable!(backups -> s3_destinations (destination_id));
diesel::joinable!(restores -> backups (backup_id));

diesel::allow_tables_to_appear_in_same_query!(
    instance,
    users,
    organizations,
    memberships,
    project_grants,
    invites,
    projects,
    environments,
    applications,
    app_env_vars,
    instance_settings,
    certificates,
    setup_tokens,
    domains,
    deployments,
    webhook_deliveries,
    database_services,
    s3_destinations,
    backup_schedules,
    backups,
    restores,
    schedule_slots,
    repairs,
    recovery_codes,
);
