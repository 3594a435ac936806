//! Projects and environments against real PostgreSQL, including tenancy: another
//! organization's IDs behave exactly like IDs that do not exist.

use engine::accounts::{self, Caller, NewAccount};
use engine::ids::{EnvironmentId, ProjectId};
use engine::names::{Description, EnvironmentName, OrgName, ProjectName, Role};
use engine::orgs::{self, Acceptor};
use engine::projects::{self, ProjectError};
use engine::teardown::{self, TeardownError};
use engine::testing::TestEngine;
use engine::{Classify, Engine, ErrorKind};

async fn owner(e: &Engine) -> Caller {
    let a = NewAccount::parse("Ada", "ada@example.com", "correct horse battery").unwrap();
    engine::testing::onboard(e, a, OrgName::parse("Acme").unwrap())
        .await
        .unwrap()
        .0
}

fn name(s: &str) -> ProjectName {
    ProjectName::parse(s).unwrap()
}

#[tokio::test]
async fn a_project_comes_with_a_protected_production_environment() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let ada = owner(e).await;
    let id = projects::create(e, &ada, name("Shop"), Description::parse("the shop").unwrap())
        .await
        .unwrap();
    let p = projects::get(e, &ada, id).await.unwrap();
    assert_eq!(p.project.name, "Shop");
    assert_eq!(p.environments.len(), 1);
    assert_eq!(
        (p.environments[0].name.as_str(), p.environments[0].protected),
        ("production", true)
    );

    let prod = EnvironmentId(p.environments[0].id);
    let rename = projects::rename_environment(e, &ada, prod, EnvironmentName::parse("prod").unwrap()).await;
    assert!(matches!(rename, Err(ProjectError::Forbidden(_))));
    assert!(matches!(
        teardown::delete_environment(e, &ada, prod, false).await,
        Err(TeardownError::Project(ProjectError::Forbidden(_)))
    ));

    let staging = projects::add_environment(e, &ada, id, EnvironmentName::parse("staging").unwrap())
        .await
        .unwrap();
    projects::rename_environment(e, &ada, staging, EnvironmentName::parse("qa").unwrap())
        .await
        .unwrap();
    let dup = projects::add_environment(e, &ada, id, EnvironmentName::parse("qa").unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(dup.kind(), ErrorKind::Validation { field: "name", .. }),
        "{dup:?}"
    );
    // A member may not delete an environment (its apps and databases go with it).
    let member = Caller {
        role: Role::Member,
        ..ada.clone()
    };
    let refused = teardown::delete_environment(e, &member, staging, false)
        .await
        .unwrap_err();
    assert!(matches!(refused.kind(), ErrorKind::Forbidden(_)), "{refused:?}");
    teardown::delete_environment(e, &ada, staging, false).await.unwrap();
    assert_eq!(projects::list(e, &ada).await.unwrap()[0].environments, 1);
}

#[tokio::test]
async fn names_are_unique_per_organization_and_updates_are_validated() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let ada = owner(e).await;
    let a = projects::create(e, &ada, name("A"), Description::default())
        .await
        .unwrap();
    projects::create(e, &ada, name("B"), Description::default())
        .await
        .unwrap();
    let err = projects::create(e, &ada, name("A"), Description::default())
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Validation { field: "name", .. }));
    let err = projects::update(e, &ada, a, name("B"), Description::default())
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Validation { field: "name", .. }));
    projects::update(e, &ada, a, name("Renamed"), Description::parse("new").unwrap())
        .await
        .unwrap();
    let names: Vec<_> = projects::list(e, &ada)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.project.name)
        .collect();
    assert_eq!(names, ["B", "Renamed"]);

    // The same name in another organization is fine.
    let other = orgs::create(e, &ada, OrgName::parse("Other").unwrap()).await.unwrap();
    let in_other = Caller {
        org_id: other,
        role: Role::Owner,
        ..ada.clone()
    };
    projects::create(e, &in_other, name("B"), Description::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn foreign_ids_are_not_found_and_nothing_changes() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let ada = owner(e).await;
    let mine = projects::create(e, &ada, name("Mine"), Description::default())
        .await
        .unwrap();
    let mine_env = projects::add_environment(e, &ada, mine, EnvironmentName::parse("dev").unwrap())
        .await
        .unwrap();

    // Mallory owns another organization on the same server.
    let (_, token) = orgs::create_invite(e, &ada, Role::Member).await.unwrap();
    let m = NewAccount::parse("Mallory", "m@example.com", "long enough pw").unwrap();
    let session = orgs::accept_invite(e, &token, Acceptor::New(m)).await.unwrap();
    let mallory = accounts::authenticate(e, session).await.unwrap();
    engine::instance::update_settings(
        e,
        &ada,
        engine::instance::Settings {
            org_creation: engine::instance::OrgCreation::Anyone,
        },
    )
    .await
    .unwrap();
    orgs::create(e, &mallory, OrgName::parse("Evil").unwrap())
        .await
        .unwrap();
    let mallory = accounts::authenticate(e, mallory.session().unwrap().clone())
        .await
        .unwrap();
    assert_ne!(mallory.org_id, ada.org_id);

    let nf = |r: Result<(), ProjectError>| assert!(matches!(r, Err(ProjectError::NotFound)), "{r:?}");
    assert!(matches!(
        projects::get(e, &mallory, mine).await,
        Err(ProjectError::NotFound)
    ));
    nf(projects::update(e, &mallory, mine, name("Pwned"), Description::default()).await);
    let nf_teardown = |r: Result<(), TeardownError>| {
        assert!(
            matches!(r, Err(TeardownError::Project(ProjectError::NotFound))),
            "{r:?}"
        )
    };
    nf_teardown(teardown::delete_project(e, &mallory, mine, true).await);
    nf(
        projects::add_environment(e, &mallory, mine, EnvironmentName::parse("x").unwrap())
            .await
            .map(|_| ()),
    );
    nf(projects::rename_environment(e, &mallory, mine_env, EnvironmentName::parse("y").unwrap()).await);
    nf_teardown(teardown::delete_environment(e, &mallory, mine_env, true).await);
    nf(projects::get(e, &ada, ProjectId(uuid::Uuid::new_v4()))
        .await
        .map(|_| ()));

    let p = projects::get(e, &ada, mine).await.unwrap();
    assert_eq!(p.project.name, "Mine");
    assert_eq!(
        p.environments.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["production", "dev"]
    );
    assert!(projects::list(e, &mallory).await.unwrap().is_empty());
}

#[tokio::test]
async fn only_admins_delete_projects() {
    let t = TestEngine::new().await;
    let e = &t.engine;
    let ada = owner(e).await;
    let id = projects::create(e, &ada, name("Keep"), Description::default())
        .await
        .unwrap();
    let member = Caller {
        role: Role::Member,
        ..ada.clone()
    };
    assert!(matches!(
        teardown::delete_project(e, &member, id, false).await,
        Err(TeardownError::Project(ProjectError::Forbidden(_)))
    ));
    teardown::delete_project(e, &ada, id, false).await.unwrap();
    assert!(matches!(projects::get(e, &ada, id).await, Err(ProjectError::NotFound)));
}

/// A page's event stream carries to a member limited to projects only what
/// happens in them: deployments and figures of their apps; nothing of another
/// project's, no notification deliveries, no machine figures. A caller who
/// reaches every project hears everything.
#[tokio::test]
async fn a_limited_members_event_stream_carries_only_their_projects() {
    use engine::apps::spec::Runtime;
    use engine::events::{Event, Sieve};
    use engine::names::ProjectRole;
    let t = TestEngine::new().await;
    let e = &t.engine;
    let ada = owner(e).await;
    let app_in = |p: ProjectId| {
        let ada = ada.clone();
        async move {
            let env = projects::get(e, &ada, p).await.unwrap().environments[0].id;
            let source = engine::testing::image_source(engine::testing::TEST_BASE_IMAGE);
            engine::testing::create_app(e, &ada, EnvironmentId(env), "sieved", source, Runtime::default())
                .await
                .0
        }
    };
    let open = projects::create(e, &ada, name("Open"), Description::default())
        .await
        .unwrap();
    let secret = projects::create(e, &ada, name("Secret"), Description::default())
        .await
        .unwrap();
    let (mine, theirs) = (app_in(open).await, app_in(secret).await);
    let limited = Caller {
        projects: accounts::Projects::Only(std::sync::Arc::new([(open.0, ProjectRole::Viewer)].into())),
        ..ada.clone()
    };
    let json = |ev: Event| serde_json::to_string(&ev).unwrap();
    let deployed = |app: uuid::Uuid| {
        json(Event::Deployment {
            id: uuid::Uuid::new_v4(),
            app,
            status: "building".into(),
        })
    };
    let events = [
        (deployed(mine), true),
        (json(Event::Metrics { id: mine }), true),
        (deployed(theirs), false),
        (json(Event::Metrics { id: theirs }), false),
        (json(Event::Metrics { id: uuid::Uuid::nil() }), false),
        (
            json(Event::Delivery {
                id: uuid::Uuid::new_v4(),
                status: "sent".into(),
            }),
            false,
        ),
        (
            json(Event::Service {
                id: uuid::Uuid::new_v4(),
            }),
            false,
        ),
        ("not an event".to_owned(), false),
    ];
    let mut sieve = Sieve::new(limited);
    let mut everything = Sieve::new(ada.clone());
    for _ in 0..2 {
        // Twice: the second pass answers from what the stream remembers.
        for (payload, admitted) in &events {
            assert_eq!(sieve.admits(e, payload).await, *admitted, "{payload}");
            if payload.starts_with('{') {
                assert!(everything.admits(e, payload).await, "{payload}");
            }
        }
    }
}

/// The organization's own settings are not a limited caller's: a key limited
/// to projects (of an admin) cannot change notification channels or alert
/// rules, and a member limited to projects reads neither, nor the other
/// members (their names, addresses and grants).
#[tokio::test]
async fn organization_settings_are_not_a_limited_callers() {
    use engine::names::ProjectRole;
    use engine::notify::{self, ChannelForm, NewChannel};
    use engine::{alerts, outbound::Policy};
    let t = TestEngine::new().await;
    let e = &t.engine;
    let ada = owner(e).await;
    let open = projects::create(e, &ada, name("Open"), Description::default())
        .await
        .unwrap();
    let form = ChannelForm {
        name: "ops".into(),
        kind: "webhook".into(),
        url: "https://hooks.example.com/berth".into(),
        ..ChannelForm::default()
    };
    let (channel, _) = notify::add_channel(e, &ada, NewChannel::parse(&form, Policy::of(e)).unwrap())
        .await
        .unwrap();
    let rule = || alerts::NewRule::parse("hot", "cpu", "90", "60", &[channel.0.to_string()]).unwrap();
    alerts::create_rule(e, &ada, rule()).await.unwrap();

    let project_key = Caller {
        projects: ada.projects.clone().within(&[open.0]),
        ..ada.clone()
    };
    let refused = notify::add_channel(e, &project_key, NewChannel::parse(&form, Policy::of(e)).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(refused.kind(), ErrorKind::Forbidden(_)), "{refused}");
    let refused = notify::remove_channel(e, &project_key, channel).await.unwrap_err();
    assert!(matches!(refused.kind(), ErrorKind::Forbidden(_)), "{refused}");
    let refused = alerts::create_rule(e, &project_key, rule()).await.unwrap_err();
    assert!(matches!(refused.kind(), ErrorKind::Forbidden(_)), "{refused}");

    let bob = engine::testing::join(e, &ada, "bob@example.com", Role::Member).await;
    let limited = Caller {
        projects: accounts::Projects::Only(std::sync::Arc::new([(open.0, ProjectRole::Admin)].into())),
        ..bob.clone()
    };
    assert_eq!(orgs::members(e, &bob).await.unwrap().len(), 2);
    let seen = orgs::members(e, &limited).await.unwrap();
    assert_eq!(
        seen.iter().map(|m| m.email.as_str()).collect::<Vec<_>>(),
        ["bob@example.com"],
        "a limited member sees only himself"
    );
    assert_eq!(notify::list_channels(e, &bob).await.unwrap().len(), 1);
    assert!(notify::list_channels(e, &limited).await.unwrap().is_empty());
    assert_eq!(alerts::list_rules(e, &bob).await.unwrap().len(), 1);
    assert!(alerts::list_rules(e, &limited).await.unwrap().is_empty());
}
