//! Notifications end to end: real HTTP receivers on loopback (Slack, Discord
//! and signed-webhook formats), a real SMTP server (aiosmtpd), the delivery
//! job's retries, the outbound address policy, tenancy, and a real Docker
//! build failing and being told with its reason.

use engine::accounts::Caller;
use engine::apps::spec::{Build, Runtime, Source};
use engine::apps::{self, NewApp};
use engine::ids::{ChannelId, DeliveryId};
use engine::jobs::Runner;
use engine::names::Description;
use engine::notify::{self, delivery::DeliveryKind, ChannelForm, NewChannel};
use engine::outbound::Policy;
use engine::testing::receiver::Receiver;
use engine::testing::{owner_with_environment, settle, DeployEnv, GitRepo, TestEngine, TEST_BASE_IMAGE};
use engine::{Classify, Engine, ErrorKind};
use hmac::Mac;
use lifecycle::DeliveryStatus;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The engine with private targets allowed (the receivers are on loopback)
/// and a public URL for links.
fn open(e: &Engine) -> Engine {
    let mut d = (*e.deploy).clone();
    d.host.allow_private_targets = true;
    d.public_url = Some("https://berth.example.com".into());
    e.clone().with_deploy(d)
}

/// Runs deliveries only, until the token is cancelled.
fn deliveries(e: &Engine) -> CancellationToken {
    let stop = CancellationToken::new();
    tokio::spawn(Runner::new(e.clone(), stop.clone()).kind(DeliveryKind).run());
    stop
}

fn form(name: &str, kind: &str, url: &str, events: &[&str]) -> ChannelForm {
    ChannelForm {
        name: name.into(),
        kind: kind.into(),
        url: url.into(),
        events: events.iter().map(|s| s.to_string()).collect(),
        ..ChannelForm::default()
    }
}

async fn add(e: &Engine, caller: &Caller, f: ChannelForm) -> (ChannelId, Option<String>) {
    let new = NewChannel::parse(&f, Policy::of(e)).expect("a valid channel");
    notify::add_channel(e, caller, new).await.expect("added")
}

async fn delivery(e: &Engine, caller: &Caller, id: DeliveryId) -> notify::Delivery {
    notify::list_deliveries(e, caller)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.id == id.0)
        .expect("the delivery is listed")
}

/// Waits for a delivery to end.
async fn ended(e: &Engine, caller: &Caller, id: DeliveryId) -> notify::Delivery {
    for _ in 0..600 {
        let d = delivery(e, caller, id).await;
        if matches!(d.status, DeliveryStatus::Succeeded | DeliveryStatus::Failed) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("delivery {id} did not end within 60 s");
}

fn verify(secret: &str, r: &engine::testing::receiver::Received) {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&r.body);
    let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    assert_eq!(r.header("x-berth-signature"), Some(want.as_str()), "a valid signature");
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_the_message_once_after_retries() {
    let t = TestEngine::new().await;
    let e = open(&t.engine);
    let (caller, _) = owner_with_environment(&e).await;
    let hook = Receiver::start(vec![500, 500]).await;
    let (channel, secret) = add(&e, &caller, form("ops", "webhook", &hook.url, &["deployment_failed"])).await;
    let secret = secret.expect("a signed webhook's secret is shown once");
    assert!(secret.starts_with("whsec_"));
    // Pages see a summary, never the URL or the secret.
    let listed = notify::list_channels(&e, &caller).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].summary, "127.0.0.1");
    assert_eq!(listed[0].events, vec!["deployment_failed".to_string()]);

    let stop = deliveries(&e);
    let id = notify::send_test(&e, &caller, channel).await.unwrap();
    let got = hook.wait_for(3, Duration::from_secs(30)).await;
    let d = ended(&e, &caller, id).await;
    stop.cancel();
    assert_eq!(d.status, DeliveryStatus::Succeeded, "{:?}", d.error);
    assert_eq!(d.attempts, 3);
    assert_eq!(got.iter().map(|r| r.answered).collect::<Vec<_>>(), vec![500, 500, 200]);
    for r in &got {
        verify(&secret, r);
        assert_eq!(
            r.header("x-berth-delivery"),
            Some(id.to_string().as_str()),
            "one delivery ID"
        );
        assert_eq!(r.header("x-berth-event"), Some("test"));
        assert_eq!(r.json()["title"], "Test notification from Berth");
        assert_eq!(r.json()["link"], "https://berth.example.com");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(hook.received().len(), 3, "nothing after it was taken");

    // Another organization cannot see, test, change or remove the channel.
    let eve = engine::testing::in_other_org(&e, &caller).await;
    let nf = |e: &dyn Classify| assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(notify::list_channels(&e, &eve).await.unwrap().is_empty());
    assert!(notify::list_deliveries(&e, &eve).await.unwrap().is_empty());
    nf(&notify::send_test(&e, &eve, channel).await.unwrap_err());
    nf(&notify::set_events(&e, &eve, channel, vec![]).await.unwrap_err());
    nf(&notify::remove_channel(&e, &eve, channel).await.unwrap_err());
    assert_eq!(notify::list_channels(&e, &caller).await.unwrap().len(), 1);
}

/// The field a refusal names.
fn field_of(e: &dyn Classify) -> &'static str {
    match e.kind() {
        ErrorKind::Validation { field, .. } => field,
        other => panic!("a validation error, not {other:?}"),
    }
}

#[tokio::test]
async fn a_channel_edited_in_place_keeps_its_secrets_and_its_waiting_retry_reaches_the_new_address() {
    let t = TestEngine::new().await;
    let e = open(&t.engine);
    let (caller, _) = owner_with_environment(&e).await;
    // The receiver first typed is wrong: it answers 500, so the test message
    // waits for its retry.
    let wrong = Receiver::start(vec![500; 20]).await;
    let right = Receiver::start(vec![]).await;
    let (channel, secret) = add(&e, &caller, form("ops", "webhook", &wrong.url, &["deployment_failed"])).await;
    let secret = secret.unwrap();
    let stop = deliveries(&e);
    let id = notify::send_test(&e, &caller, channel).await.unwrap();
    wrong.wait_for(1, Duration::from_secs(30)).await;

    // Fixed in place: a new name and URL, the signing secret kept.
    let fix = ChannelForm {
        name: "ops-fixed".into(),
        url: right.url.clone(),
        ..ChannelForm::default()
    };
    let shown = notify::edit_channel(&e, &caller, channel, &fix, false, Policy::of(&e))
        .await
        .unwrap();
    assert!(
        shown.is_none(),
        "the signing secret is kept unless a new one is asked for"
    );
    let got = right.wait_for(1, Duration::from_secs(30)).await;
    let d = ended(&e, &caller, id).await;
    assert_eq!(d.status, DeliveryStatus::Succeeded, "{:?}", d.error);
    assert!(
        d.attempts >= 2,
        "the waiting retry went to the new address: {}",
        d.attempts
    );
    verify(&secret, &got[0]);
    assert_eq!(got[0].header("x-berth-delivery"), Some(id.to_string().as_str()));
    let listed = notify::list_channels(&e, &caller).await.unwrap();
    assert_eq!(listed[0].name, "ops-fixed");
    assert_eq!(
        listed[0].events,
        vec!["deployment_failed".to_string()],
        "events are not the edit's"
    );
    let editable = notify::editable(&e, &caller).await.unwrap();
    assert_eq!(
        editable,
        vec![(channel, notify::Editable::default())],
        "a URL is never shown back"
    );

    // A blank URL keeps the stored one; a new signing secret is shown once.
    let rotate = ChannelForm {
        name: "ops-fixed".into(),
        ..ChannelForm::default()
    };
    let new = notify::edit_channel(&e, &caller, channel, &rotate, true, Policy::of(&e))
        .await
        .unwrap()
        .expect("the new signing secret");
    assert!(new.starts_with("whsec_") && new != secret);
    let second = notify::send_test(&e, &caller, channel).await.unwrap();
    let got = right.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(ended(&e, &caller, second).await.status, DeliveryStatus::Succeeded);
    verify(&new, &got[1]);

    // Refused edits name the field and change nothing.
    let with = |name: &str, kind: &str, url: &str| ChannelForm {
        name: name.into(),
        kind: kind.into(),
        url: url.into(),
        ..ChannelForm::default()
    };
    let refused = |r: Result<Option<String>, notify::NotifyError>| r.expect_err("refused");
    let policy = Policy::of(&e);
    assert_eq!(
        field_of(&refused(
            notify::edit_channel(&e, &caller, channel, &with("x", "slack", ""), false, policy).await
        )),
        "kind"
    );
    assert_eq!(
        field_of(&refused(
            notify::edit_channel(
                &e,
                &caller,
                channel,
                &with("x", "", "ftp://example.com/"),
                false,
                policy
            )
            .await
        )),
        "url"
    );
    assert_eq!(
        field_of(&refused(
            notify::edit_channel(&e, &caller, channel, &with("", "", ""), false, policy).await
        )),
        "name"
    );
    // With private targets off, the stored loopback address is refused like a typed one.
    let strict = Policy::of(&t.engine);
    assert_eq!(
        field_of(&refused(
            notify::edit_channel(&e, &caller, channel, &with("x", "", ""), false, strict).await
        )),
        "url"
    );
    let member = engine::testing::join(&e, &caller, "member@example.com", engine::names::Role::Member).await;
    let err = refused(notify::edit_channel(&e, &member, channel, &with("x", "", ""), false, policy).await);
    assert!(matches!(err.kind(), ErrorKind::Forbidden(_)), "{err}");
    assert!(
        notify::editable(&e, &member).await.unwrap().is_empty(),
        "members see summaries only"
    );
    let eve = engine::testing::in_other_org(&e, &caller).await;
    let err = refused(notify::edit_channel(&e, &eve, channel, &with("x", "", ""), true, policy).await);
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let listed = notify::list_channels(&e, &caller).await.unwrap();
    assert_eq!((listed.len(), listed[0].name.as_str()), (1, "ops-fixed"));
    let third = notify::send_test(&e, &caller, channel).await.unwrap();
    let got = right.wait_for(3, Duration::from_secs(30)).await;
    assert_eq!(ended(&e, &caller, third).await.status, DeliveryStatus::Succeeded);
    verify(&new, &got[2]);
    stop.cancel();
}

#[tokio::test]
async fn an_email_channel_edited_without_its_password_keeps_it() {
    let t = TestEngine::new().await;
    let e = open(&t.engine);
    let (caller, _) = owner_with_environment(&e).await;
    let f = ChannelForm {
        name: "mail".into(),
        kind: "email".into(),
        smtp_host: "127.0.0.1".into(),
        smtp_port: "2525".into(),
        smtp_security: "none".into(),
        smtp_username: "berth".into(),
        smtp_password: "hunter2-hunter2".into(),
        email_from: "berth@example.com".into(),
        email_to: "ops@example.com".into(),
        ..ChannelForm::default()
    };
    let (channel, _) = add(&e, &caller, f.clone()).await;
    let shown = notify::editable(&e, &caller).await.unwrap();
    let want = notify::Editable {
        smtp_host: "127.0.0.1".into(),
        smtp_port: "2525".into(),
        smtp_security: "none".into(),
        smtp_username: "berth".into(),
        email_from: "berth@example.com".into(),
        email_to: "ops@example.com".into(),
        ..notify::Editable::default()
    };
    assert_eq!(shown, vec![(channel, want.clone())], "everything but the password");

    // Another recipient, the password left blank: it is kept.
    let edit = ChannelForm {
        kind: String::new(),
        smtp_password: String::new(),
        email_to: "ops@example.com, ada@example.com".into(),
        ..f.clone()
    };
    notify::edit_channel(&e, &caller, channel, &edit, false, Policy::of(&e))
        .await
        .unwrap();
    let settings = engine::testing::channel_settings(&e, &caller, channel).await;
    assert!(settings.contains("hunter2-hunter2"), "the stored password is kept");
    assert!(settings.contains("ada@example.com"));
    assert_eq!(
        notify::list_channels(&e, &caller).await.unwrap()[0].summary,
        "ops@example.com, ada@example.com via 127.0.0.1"
    );
    // Another relay or user name: the stored password is not sent there.
    for moved in [
        ChannelForm {
            smtp_host: "smtp.example.net".into(),
            ..edit.clone()
        },
        ChannelForm {
            smtp_username: "someone-else".into(),
            ..edit.clone()
        },
    ] {
        let err = notify::edit_channel(&e, &caller, channel, &moved, false, Policy::of(&e))
            .await
            .unwrap_err();
        assert_eq!(field_of(&err), "smtp_password", "{err}");
    }
    let settings = engine::testing::channel_settings(&e, &caller, channel).await;
    assert!(
        settings.contains("127.0.0.1") && settings.contains("\"berth\""),
        "unchanged: {settings}"
    );
    // Without a user name there is no password to keep.
    let anonymous = ChannelForm {
        smtp_username: String::new(),
        ..edit
    };
    notify::edit_channel(&e, &caller, channel, &anonymous, false, Policy::of(&e))
        .await
        .unwrap();
    let settings = engine::testing::channel_settings(&e, &caller, channel).await;
    assert!(!settings.contains("hunter2-hunter2"), "{settings}");
}

#[tokio::test]
async fn teams_and_google_chat_receive_their_own_formats_over_http() {
    let t = TestEngine::new().await;
    let e = open(&t.engine);
    let (caller, _) = owner_with_environment(&e).await;
    let teams = Receiver::start(vec![]).await;
    let chat = Receiver::start(vec![]).await;
    let (to_teams, _) = add(&e, &caller, form("teams", "teams", &teams.url, &[])).await;
    let (to_chat, _) = add(&e, &caller, form("chat", "google_chat", &chat.url, &[])).await;
    let stop = deliveries(&e);
    let a = notify::send_test(&e, &caller, to_teams).await.unwrap();
    let b = notify::send_test(&e, &caller, to_chat).await.unwrap();
    let (card, text) = (
        teams.wait_for(1, Duration::from_secs(30)).await,
        chat.wait_for(1, Duration::from_secs(30)).await,
    );
    assert_eq!(ended(&e, &caller, a).await.status, DeliveryStatus::Succeeded);
    assert_eq!(ended(&e, &caller, b).await.status, DeliveryStatus::Succeeded);
    stop.cancel();
    for r in [&card[0], &text[0]] {
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{:?}",
            r.header("content-type")
        );
    }
    // Teams' Workflows webhook takes a message with an Adaptive Card attached.
    let body = card[0].json();
    assert_eq!(body["type"], "message", "{body}");
    let attached = &body["attachments"][0];
    assert_eq!(attached["contentType"], "application/vnd.microsoft.card.adaptive");
    assert_eq!(attached["content"]["body"][0]["text"], "Test notification from Berth");
    assert_eq!(attached["content"]["actions"][0]["url"], "https://berth.example.com");
    // Google Chat's webhook takes plain `text`.
    let body = text[0].json();
    let words = body["text"].as_str().unwrap();
    assert!(
        words.contains("Test notification from Berth") && words.contains("The channel chat works."),
        "{body}"
    );
}

#[tokio::test]
async fn telegram_sends_to_the_bot_api_configured() {
    let t = TestEngine::new().await;
    let bot_api = Receiver::start(vec![]).await;
    let mut d = (*open(&t.engine).deploy).clone();
    // A self-hosted Bot API server, as BERTH_TELEGRAM_API_URL names one.
    d.telegram_api = bot_api.url.trim_end_matches("/hook").to_owned();
    let e = t.engine.clone().with_deploy(d);
    let (caller, _) = owner_with_environment(&e).await;
    let token = "123456:ABCdefGHIjklMNOpqrSTUvwxYZ_0123";
    let f = ChannelForm {
        name: "chat".into(),
        kind: "telegram".into(),
        bot_token: token.into(),
        chat_id: "-1001234567".into(),
        ..ChannelForm::default()
    };
    let (channel, _) = add(&e, &caller, f).await;
    let stop = deliveries(&e);
    let id = notify::send_test(&e, &caller, channel).await.unwrap();
    let got = bot_api.wait_for(1, Duration::from_secs(30)).await;
    let d = ended(&e, &caller, id).await;
    stop.cancel();
    assert_eq!(d.status, DeliveryStatus::Succeeded, "{:?}", d.error);
    assert_eq!(got[0].path, format!("/bot{token}/sendMessage"));
    let body = got[0].json();
    assert_eq!(body["chat_id"], "-1001234567");
    assert_eq!(body["parse_mode"], "HTML");
    assert!(
        body["text"].as_str().unwrap().contains("Test notification from Berth"),
        "{body}"
    );
}

#[tokio::test]
async fn a_refused_message_is_not_retried_and_is_sent_again_once_the_address_is_fixed() {
    let t = TestEngine::new().await;
    let e = open(&t.engine);
    let (caller, _) = owner_with_environment(&e).await;
    let hook = Receiver::start(vec![404]).await;
    let (channel, _) = add(&e, &caller, form("gone", "slack", &hook.url, &[])).await;
    let stop = deliveries(&e);
    let id = notify::send_test(&e, &caller, channel).await.unwrap();
    let d = ended(&e, &caller, id).await;
    stop.cancel();
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert_eq!(d.attempts, 1);
    let err = d.error.unwrap();
    assert!(err.contains("404"), "{err}");
    assert!(!err.contains("/hook"), "errors never carry the URL: {err}");
    assert_eq!(hook.received().len(), 1);

    // The address fixed, the failed message is sent again: a new delivery of
    // the same notice, the failed one left as it was.
    let fixed = Receiver::start(vec![]).await;
    let fix = ChannelForm {
        name: "gone".into(),
        url: fixed.url.clone(),
        ..ChannelForm::default()
    };
    notify::edit_channel(&e, &caller, channel, &fix, false, Policy::of(&e))
        .await
        .unwrap();
    let eve = engine::testing::in_other_org(&e, &caller).await;
    assert_eq!(
        notify::resend(&e, &eve, id).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
    let stop = deliveries(&e);
    let again = notify::resend(&e, &caller, id).await.unwrap();
    assert_ne!(again, id);
    let got = fixed.wait_for(1, Duration::from_secs(30)).await;
    let d = ended(&e, &caller, again).await;
    stop.cancel();
    assert_eq!(
        (d.status, d.attempts, d.event.as_str()),
        (DeliveryStatus::Succeeded, 1, "test")
    );
    assert!(got[0].json()["text"]
        .as_str()
        .unwrap()
        .contains("Test notification from Berth"));
    assert_eq!(
        delivery(&e, &caller, id).await.status,
        DeliveryStatus::Failed,
        "the failed one keeps its history"
    );
    // Only a failed delivery is sent again.
    let err = notify::resend(&e, &caller, again).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Validation { field: "id", .. }), "{err}");
    assert_eq!(hook.received().len(), 1);
}

#[tokio::test]
async fn private_receivers_are_refused_when_private_targets_are_off() {
    let t = TestEngine::new().await;
    let e = t.engine.clone();
    assert!(!e.deploy.host.allow_private_targets);
    let (caller, _) = owner_with_environment(&e).await;
    let hook = Receiver::start(vec![]).await;
    let port = hook
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // An address literal is refused at the form, naming the field.
    for url in [
        format!("https://127.0.0.1:{port}/hook"),
        "https://169.254.169.254/latest".to_string(),
        "https://[::1]/x".to_string(),
        "https://2130706433/x".to_string(),
        hook.url.clone(),
    ] {
        let err = NewChannel::parse(&form("x", "discord", &url, &[]), Policy::of(&e))
            .err()
            .unwrap_or_else(|| panic!("{url} was accepted"));
        assert_eq!(err.field, "url", "{url}: {err}");
    }
    // A name that resolves to loopback passes the form and is refused when sent.
    let (channel, _) = add(
        &e,
        &caller,
        form("sneaky", "discord", &format!("https://localhost:{port}/hook"), &[]),
    )
    .await;
    let stop = deliveries(&e);
    let id = notify::send_test(&e, &caller, channel).await.unwrap();
    let d = ended(&e, &caller, id).await;
    stop.cancel();
    assert_eq!(d.status, DeliveryStatus::Failed);
    assert_eq!(d.attempts, 1, "a refused address is not retried");
    assert!(d.error.as_deref().unwrap().contains("loopback"), "{:?}", d.error);
    assert!(hook.received().is_empty(), "nothing reached the receiver");

    // Bad input names its field and stores nothing.
    for (f, field) in [
        (form("", "slack", "https://hooks.example.com/x", &[]), "name"),
        (form("a", "carrier-pigeon", "https://hooks.example.com/x", &[]), "kind"),
        (form("a", "slack", "ftp://hooks.example.com/x", &[]), "url"),
        (form("a", "slack", "https://hooks.example.com/x", &["test"]), "events"),
        (form("a", "email", "", &[]), "smtp_host"),
        (form("a", "telegram", "", &[]), "bot_token"),
    ] {
        let err = NewChannel::parse(&f, Policy::of(&e)).err().expect("refused");
        assert_eq!(err.field, field, "{err}");
    }
    assert_eq!(notify::list_channels(&e, &caller).await.unwrap().len(), 1);
}

/// aiosmtpd from PyPI (`scripts/tools.sh test` installs it).
fn aiosmtpd() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/venv/bin/aiosmtpd");
    assert!(p.exists(), "{} is missing: run scripts/tools.sh test", p.display());
    p
}

#[tokio::test]
async fn email_arrives_with_the_events_subject() {
    let t = TestEngine::new().await;
    let e = open(&t.engine);
    let (caller, _) = owner_with_environment(&e).await;
    let dir = tempdir("berth-smtp");
    let port = engine::testing::free_port();
    let mut server = tokio::process::Command::new(aiosmtpd())
        .args([
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(dir.join("mail"))
        .kill_on_drop(true)
        .spawn()
        .expect("aiosmtpd starts");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let f = ChannelForm {
        name: "on-call".into(),
        kind: "email".into(),
        smtp_host: "127.0.0.1".into(),
        smtp_port: port.to_string(),
        smtp_security: "none".into(),
        email_from: "Berth <berth@example.com>".into(),
        email_to: "ops@example.com, ada@example.com".into(),
        ..ChannelForm::default()
    };
    let (channel, secret) = add(&e, &caller, f).await;
    assert!(secret.is_none());
    let stop = deliveries(&e);
    let id = notify::send_test(&e, &caller, channel).await.unwrap();
    let d = ended(&e, &caller, id).await;
    stop.cancel();
    assert_eq!(d.status, DeliveryStatus::Succeeded, "{:?}", d.error);
    let new = dir.join("mail").join("new");
    let mail: Vec<String> = std::fs::read_dir(&new)
        .expect("the maildir")
        .map(|f| std::fs::read_to_string(f.unwrap().path()).unwrap())
        .collect();
    let _ = server.kill().await;
    assert_eq!(mail.len(), 1, "{mail:#?}");
    let m = &mail[0];
    assert!(m.contains("Subject: [Berth] Test notification from Berth"), "{m}");
    assert!(m.contains("To: ops@example.com, ada@example.com"), "{m}");
    assert!(m.contains("The channel on-call works."), "{m}");
    let _ = std::fs::remove_dir_all(dir);
}

fn tempdir(prefix: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[tokio::test]
async fn a_failing_deployment_tells_slack_and_discord_why() {
    let env = DeployEnv::new().await;
    let e = open(env.engine());
    let (caller, envid) = owner_with_environment(&e).await;
    let slack = Receiver::start(vec![]).await;
    let discord = Receiver::start(vec![]).await;
    let quiet = Receiver::start(vec![]).await;
    add(&e, &caller, form("slack", "slack", &slack.url, &["deployment_failed"])).await;
    add(
        &e,
        &caller,
        form(
            "discord",
            "discord",
            &discord.url,
            &["deployment_failed", "deployment_succeeded"],
        ),
    )
    .await;
    add(
        &e,
        &caller,
        form("quiet", "webhook", &quiet.url, &["deployment_succeeded"]),
    )
    .await;

    let repo = GitRepo::new();
    repo.commit(
        &[("Dockerfile", &format!("FROM {TEST_BASE_IMAGE}\nRUN false\n"))],
        "broken",
    );
    let app = apps::create(
        &e,
        &caller,
        NewApp {
            name: apps::spec::AppName::parse("shop").unwrap(),
            description: Description::default(),
            environment: envid,
            source: Source::Git {
                url: repo.url(),
                branch: "main".into(),
                subdir: ".".into(),
            },
            source_secret: None,
            build: Build::default(),
            runtime: Runtime::default(),
        },
    )
    .await
    .unwrap();
    let stop = CancellationToken::new();
    let worker = tokio::spawn(engine::worker::run(e.clone(), stop.clone()));
    let d = settle(&e, &caller, engine::deploy::deploy(&e, &caller, app).await.unwrap()).await;
    assert_eq!(d.status, engine::deploy::Status::Failed);
    let reason = d.reason.clone().unwrap();
    assert!(reason.starts_with("build failed at step 2"), "{reason}");

    let s = slack.wait_for(1, Duration::from_secs(30)).await;
    let text = s[0].json()["text"].as_str().unwrap().to_owned();
    assert!(text.starts_with("*Deployment of shop failed*"), "{text}");
    assert!(text.contains(&reason), "the reason is in Slack's text: {text}");
    assert!(
        text.contains(&format!("<https://berth.example.com/apps/{app}|Open in Berth>")),
        "{text}"
    );

    let dd = discord.wait_for(1, Duration::from_secs(30)).await;
    let embed = &dd[0].json()["embeds"][0];
    assert_eq!(embed["title"], "Deployment of shop failed");
    assert!(embed["description"].as_str().unwrap().contains(&reason), "{embed}");
    assert_eq!(embed["url"], format!("https://berth.example.com/apps/{app}"));

    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        quiet.received().is_empty(),
        "a channel that did not choose failures hears nothing"
    );
    assert_eq!(slack.received().len(), 1);
    assert_eq!(discord.received().len(), 1);
    stop.cancel();
    let _ = worker.await;
}

/// Runs `docker` against the test engine.
fn docker(e: &Engine, args: &[&str]) {
    let out = std::process::Command::new("docker")
        .env("DOCKER_HOST", e.docker.host())
        .args(args)
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_alert_fires_once_signed_and_resolves_when_the_container_calms() {
    use engine::alerts::{self, NewRule};
    use engine::docker::{ContainerSpec, LABEL_APP, LABEL_INSTANCE};
    let t = TestEngine::new().await;
    let e = open(&t.sampling_every_second());
    let (caller, envid) = owner_with_environment(&e).await;
    let app = engine::testing::create_app(
        &e,
        &caller,
        envid,
        "cache",
        engine::testing::image_source(TEST_BASE_IMAGE),
        Runtime::default(),
    )
    .await;
    let app_name = engine::apps::get(&e, &caller, app)
        .await
        .unwrap()
        .app
        .name
        .as_str()
        .to_owned();
    let hook = Receiver::start(vec![]).await;
    let (channel, secret) = add(&e, &caller, form("pager", "webhook", &hook.url, &[])).await;
    let secret = secret.unwrap();
    // Refused rules name their field and store nothing.
    let bad = NewRule::parse("disk", "disk", "90", "60", &[channel.to_string()]).unwrap();
    let member = Caller {
        instance_admin: false,
        ..caller.clone()
    };
    let err = alerts::create_rule(&e, &member, bad).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Validation { field: "metric", .. }),
        "{err}"
    );
    let foreign = NewRule::parse("x", "cpu", "90", "60", &[uuid::Uuid::new_v4().to_string()]).unwrap();
    let err = alerts::create_rule(&e, &caller, foreign).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "another organization's channel is not found: {err}"
    );
    let rule = NewRule::parse("memory high", "memory", "50", "10", &[channel.to_string()]).unwrap();
    alerts::create_rule(&e, &caller, rule).await.unwrap();
    assert_eq!(alerts::list_rules(&e, &caller).await.unwrap().len(), 1);

    // A container of the app holding 40 MiB of shared memory under a 64 MiB limit.
    let name = format!("{}-cache", e.deploy.instance);
    let mut spec = ContainerSpec::new(&name, TEST_BASE_IMAGE);
    spec.cmd = Some(vec![
        "sh".into(),
        "-c".into(),
        "dd if=/dev/zero of=/dev/shm/hold bs=1M count=40 && sleep 600".into(),
    ]);
    spec.memory_bytes = Some(64 * 1024 * 1024);
    spec.labels.insert(LABEL_INSTANCE.into(), e.deploy.instance.clone());
    spec.labels.insert(LABEL_APP.into(), app.to_string());
    e.docker.create_container(&spec).await.unwrap();
    e.docker.start_container(&name).await.unwrap();
    struct Gone(Engine, String);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::process::Command::new("docker")
                .env("DOCKER_HOST", self.0.docker.host())
                .args(["rm", "-f", &self.1])
                .output();
        }
    }
    let _gone = Gone(e.clone(), name.clone());

    let started = std::time::Instant::now();
    let stop = deliveries(&e);
    let sampler = tokio::spawn(engine::sampling::run(e.clone(), stop.clone()));
    let fired = hook.wait_for(1, Duration::from_secs(60)).await;
    assert!(started.elapsed() >= Duration::from_secs(10), "it held for 10 s first");
    let body = fired[0].json();
    assert_eq!(body["title"], "Alert: memory high");
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with(&format!("Memory of {app_name} is ")), "{text}");
    assert!(text.contains("above 50.0 % for 10 s"), "{text}");
    assert_eq!(body["link"], format!("https://berth.example.com/apps/{app}"));
    verify(&secret, &fired[0]);
    // Told once while it holds.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(hook.received().len(), 1, "one message per incident");
    let open = alerts::list_incidents(&e, &caller).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].state, lifecycle::IncidentState::Firing);

    // The container calms: "resolved", once.
    docker(&e, &["exec", &name, "sh", "-c", ": > /dev/shm/hold"]);
    let both = hook.wait_for(2, Duration::from_secs(30)).await;
    let body = both[1].json();
    assert_eq!(body["title"], "Resolved: memory high");
    assert!(body["text"].as_str().unwrap().contains("is back to"), "{body}");
    verify(&secret, &both[1]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.cancel();
    let _ = sampler.await;
    assert_eq!(hook.received().len(), 2);
    let done = alerts::list_incidents(&e, &caller).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].state, lifecycle::IncidentState::Resolved);
    assert!(done[0].resolved_at.is_some());

    // Another organization sees none of it and cannot remove the rule.
    let eve = engine::testing::in_other_org(&e, &caller).await;
    assert!(alerts::list_rules(&e, &eve).await.unwrap().is_empty());
    assert!(alerts::list_incidents(&e, &eve).await.unwrap().is_empty());
    let rule = alerts::list_rules(&e, &caller).await.unwrap()[0].id;
    assert_eq!(
        alerts::delete_rule(&e, &eve, rule).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

/// One sampling pass's point for an app: `percent` of its memory limit used.
fn memory_at(percent: i64) -> engine::metrics::store::Point {
    engine::metrics::store::Point {
        at: chrono::Utc::now(),
        cpu_percent: 0.0,
        memory_bytes: percent * 1024 * 1024,
        memory_limit: 100 * 1024 * 1024,
        rx_bytes: 0,
        tx_bytes: 0,
        read_bytes: 0,
        write_bytes: 0,
        load1: None,
        disk_used: None,
        disk_total: None,
        docker_disk_used: None,
        docker_disk_total: None,
    }
}

#[tokio::test]
async fn an_alert_rule_edited_in_place_judges_its_open_incident_by_the_new_threshold() {
    use engine::alerts::{self, NewRule};
    use engine::metrics::Subject;
    let t = TestEngine::new().await;
    let e = open(&t.engine);
    let (caller, envid) = owner_with_environment(&e).await;
    let app = engine::testing::create_app(
        &e,
        &caller,
        envid,
        "cache",
        engine::testing::image_source(TEST_BASE_IMAGE),
        Runtime::default(),
    )
    .await;
    let first = Receiver::start(vec![]).await;
    let second = Receiver::start(vec![]).await;
    let (a, _) = add(&e, &caller, form("first", "slack", &first.url, &[])).await;
    let (b, _) = add(&e, &caller, form("second", "slack", &second.url, &[])).await;
    let rule = NewRule::parse("memory high", "memory", "50", "0", &[a.to_string()]).unwrap();
    let rule = alerts::create_rule(&e, &caller, rule).await.unwrap();
    let stop = deliveries(&e);
    // 60 % against "above 50 %": it fires, and the first channel is told.
    let pass = [(Subject::App(app.0), memory_at(60))];
    for _ in 0..3 {
        alerts::evaluate(&e, &pass).await.unwrap();
    }
    let fired = first.wait_for(1, Duration::from_secs(30)).await;
    assert!(
        fired[0].json()["text"].as_str().unwrap().contains("above 50.0 %"),
        "{}",
        fired[0].json()
    );

    // Raised to 80 % and told elsewhere: the same 60 % clears the incident
    // at the next pass, and the rule's channels now are the second one.
    let edit = |threshold: &str, metric: &str, channels: &[String]| {
        NewRule::parse("memory very high", metric, threshold, "0", channels).unwrap()
    };
    alerts::update_rule(&e, &caller, rule, edit("80", "memory", &[b.to_string()]))
        .await
        .unwrap();
    let listed = alerts::list_rules(&e, &caller).await.unwrap();
    assert_eq!(
        (
            listed[0].name.as_str(),
            listed[0].threshold,
            listed[0].channels.as_slice()
        ),
        ("memory very high", 80.0, [b.0].as_slice())
    );
    alerts::evaluate(&e, &pass).await.unwrap();
    let resolved = second.wait_for(1, Duration::from_secs(30)).await;
    let body = resolved[0].json();
    assert!(
        body["text"].as_str().unwrap().contains("Resolved: memory very high"),
        "{body}"
    );
    assert!(body["text"].as_str().unwrap().contains("threshold 80.0 %"), "{body}");
    let incidents = alerts::list_incidents(&e, &caller).await.unwrap();
    assert_eq!(incidents[0].state, lifecycle::IncidentState::Resolved);
    assert_eq!(first.received().len(), 1, "the first channel is no longer the rule's");

    // Refused edits name their field or say why, and change nothing.
    let err = alerts::update_rule(&e, &caller, rule, edit("80", "cpu", &[b.to_string()]))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Validation { field: "metric", .. }),
        "{err}"
    );
    let foreign = uuid::Uuid::new_v4().to_string();
    let err = alerts::update_rule(&e, &caller, rule, edit("90", "memory", &[foreign]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "another organization's channel: {err}");
    let member = engine::testing::join(&e, &caller, "member@example.com", engine::names::Role::Member).await;
    let err = alerts::update_rule(&e, &member, rule, edit("90", "memory", &[b.to_string()]))
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Forbidden(_)), "{err}");
    let eve = engine::testing::in_other_org(&e, &caller).await;
    let err = alerts::update_rule(&e, &eve, rule, edit("90", "memory", &[b.to_string()]))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(alerts::list_rules(&e, &caller).await.unwrap()[0].threshold, 80.0);
    // A disk rule is the host's: only an instance administrator changes it.
    let disk = NewRule::parse("disk", "disk", "90", "60", &[b.to_string()]).unwrap();
    let disk = alerts::create_rule(&e, &caller, disk).await.unwrap();
    let not_instance_admin = Caller {
        instance_admin: false,
        ..caller.clone()
    };
    let raise = NewRule::parse("disk", "disk", "95", "60", &[b.to_string()]).unwrap();
    let err = alerts::update_rule(&e, &not_instance_admin, disk, raise.clone())
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Forbidden(_)), "{err}");
    alerts::update_rule(&e, &caller, disk, raise).await.unwrap();
    stop.cancel();
}

#[tokio::test]
async fn an_upgrade_is_told_once() {
    let t = TestEngine::new().await;
    let e = open(&t.engine);
    // Before onboarding there is no instance to record, and nobody to tell.
    assert_eq!(notify::upgraded(&e, "0.1.0").await.unwrap(), None);
    let (caller, _) = owner_with_environment(&e).await;
    let hook = Receiver::start(vec![]).await;
    add(&e, &caller, form("ops", "google_chat", &hook.url, &["upgraded"])).await;
    let quiet = Receiver::start(vec![]).await;
    add(
        &e,
        &caller,
        form("quiet", "google_chat", &quiet.url, &["deployment_failed"]),
    )
    .await;
    let stop = deliveries(&e);
    // The first release recorded is an installation.
    assert_eq!(notify::upgraded(&e, "0.1.0 (abc)").await.unwrap(), None);
    assert_eq!(notify::upgraded(&e, "0.1.0 (abc)").await.unwrap(), None);
    // Two replicas starting on the new release: one tells.
    let (a, b) = tokio::join!(notify::upgraded(&e, "0.2.0 (def)"), notify::upgraded(&e, "0.2.0 (def)"));
    let told: Vec<_> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(told, vec!["0.1.0 (abc)".to_string()]);
    let got = hook.wait_for(1, Duration::from_secs(30)).await;
    let text = got[0].json()["text"].as_str().unwrap().to_owned();
    assert!(
        text.starts_with("Berth upgraded to 0.2.0 (def)\nWas 0.1.0 (abc)."),
        "{text}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    assert_eq!(hook.received().len(), 1);
    assert!(quiet.received().is_empty());
}

#[tokio::test]
async fn restarts_and_oom_kills_are_counted_in_their_window() {
    use engine::alerts::{self, NewRule};
    use engine::metrics::Subject;
    let t = TestEngine::new().await;
    let e = open(&t.engine);
    let (caller, envid) = owner_with_environment(&e).await;
    let image = || engine::testing::image_source(TEST_BASE_IMAGE);
    let app = engine::testing::create_app(&e, &caller, envid, "api", image(), Runtime::default()).await;
    let hook = Receiver::start(vec![]).await;
    let (channel, _) = add(&e, &caller, form("pager", "slack", &hook.url, &[])).await;
    let ch = [channel.to_string()];
    alerts::create_rule(
        &e,
        &caller,
        NewRule::parse("flapping", "restarts", "2", "10", &ch).unwrap(),
    )
    .await
    .unwrap();
    alerts::create_rule(&e, &caller, NewRule::parse("oom", "oom", "1", "10", &ch).unwrap())
        .await
        .unwrap();
    // Another organization's app restarting counts for nobody here.
    let eve = engine::testing::in_other_org(&e, &caller).await;
    let p = engine::projects::create(
        &e,
        &eve,
        engine::names::ProjectName::parse("P").unwrap(),
        Description::default(),
    )
    .await
    .unwrap();
    let eve_env = engine::ids::EnvironmentId(engine::projects::get(&e, &eve, p).await.unwrap().environments[0].id);
    let theirs = engine::testing::create_app(&e, &eve, eve_env, "api", image(), Runtime::default()).await;
    for _ in 0..3 {
        alerts::record_event(&e, Subject::App(theirs.0), "restart")
            .await
            .unwrap();
    }
    let stop = deliveries(&e);

    // One restart: under the rule's two.
    alerts::record_event(&e, Subject::App(app.0), "restart").await.unwrap();
    alerts::evaluate(&e, &[]).await.unwrap();
    assert!(alerts::list_incidents(&e, &caller).await.unwrap().is_empty());
    // The second within the window fires it, once.
    alerts::record_event(&e, Subject::App(app.0), "restart").await.unwrap();
    // An OOM kill seen twice (Docker's event, then the repair) counts once.
    alerts::record_event(&e, Subject::App(app.0), "oom").await.unwrap();
    alerts::record_event(&e, Subject::App(app.0), "oom").await.unwrap();
    alerts::evaluate(&e, &[]).await.unwrap();
    alerts::evaluate(&e, &[]).await.unwrap();
    let got = hook.wait_for(2, Duration::from_secs(30)).await;
    let mut texts: Vec<String> = got
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_owned())
        .collect();
    texts.sort();
    assert!(texts[0].starts_with("*Alert: flapping*\napi-"), "{texts:?}");
    assert!(
        texts[0].contains(" was restarted 2 times in the last 10 s (rule: 2 times)"),
        "{texts:?}"
    );
    assert!(texts[1].starts_with("*Alert: oom*\napi-"), "{texts:?}");
    assert!(
        texts[1].contains(" was OOM-killed once in the last 10 s (rule: once)"),
        "{texts:?}"
    );
    let firing = alerts::list_incidents(&e, &caller).await.unwrap();
    assert_eq!(firing.len(), 2);
    assert!(firing.iter().all(|i| i.state == lifecycle::IncidentState::Firing));
    assert!(alerts::list_incidents(&e, &eve).await.unwrap().is_empty());

    // Once the window has passed with no more, both are resolved.
    tokio::time::sleep(Duration::from_secs(11)).await;
    alerts::evaluate(&e, &[]).await.unwrap();
    let got = hook.wait_for(4, Duration::from_secs(30)).await;
    let resolved: Vec<String> = got[2..]
        .iter()
        .map(|r| r.json()["text"].as_str().unwrap().to_owned())
        .collect();
    assert!(resolved.iter().all(|t| t.starts_with("*Resolved: ")), "{resolved:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    assert_eq!(hook.received().len(), 4);
    assert!(alerts::list_incidents(&e, &caller)
        .await
        .unwrap()
        .iter()
        .all(|i| i.state == lifecycle::IncidentState::Resolved));
}

#[tokio::test]
async fn a_failing_or_expiring_certificate_is_told_and_cleared() {
    use diesel_async::RunQueryDsl;
    use engine::alerts::{self, NewRule};
    let t = TestEngine::new().await;
    let e = open(&t.engine);
    let (caller, envid) = owner_with_environment(&e).await;
    let image = engine::testing::image_source(TEST_BASE_IMAGE);
    let app = engine::testing::create_app(&e, &caller, envid, "shop", image, Runtime::default()).await;
    let hook = Receiver::start(vec![]).await;
    let (channel, _) = add(&e, &caller, form("pager", "discord", &hook.url, &[])).await;
    alerts::create_rule(
        &e,
        &caller,
        NewRule::parse("certs", "certificate", "14", "", &[channel.to_string()]).unwrap(),
    )
    .await
    .unwrap();
    let stop = deliveries(&e);
    // What the certificate watch writes: a failure, then a certificate, then
    // one close to its end.
    let set = |sql: &'static str| {
        let e = e.clone();
        async move {
            let mut conn = e.db.get().await.unwrap();
            diesel::sql_query(sql)
                .bind::<diesel::sql_types::Uuid, _>(app.0)
                .execute(&mut conn)
                .await
                .unwrap();
        }
    };
    set("UPDATE domains SET https = true, cert_status = 'failed', cert_error = 'acme: too many certificates' WHERE application_id = $1").await;
    alerts::evaluate(&e, &[]).await.unwrap();
    alerts::evaluate(&e, &[]).await.unwrap();
    let got = hook.wait_for(1, Duration::from_secs(30)).await;
    let embed = &got[0].json()["embeds"][0];
    assert_eq!(embed["title"], "Alert: certs");
    let text = embed["description"].as_str().unwrap();
    assert!(text.ends_with("failed: acme: too many certificates"), "{text}");
    assert_eq!(
        embed["url"],
        format!("https://berth.example.com/apps/{app}?tab=domains")
    );

    set("UPDATE domains SET cert_status = 'issued', cert_error = NULL, cert_not_after = now() + interval '60 days' WHERE application_id = $1").await;
    alerts::evaluate(&e, &[]).await.unwrap();
    let got = hook.wait_for(2, Duration::from_secs(30)).await;
    assert_eq!(got[1].json()["embeds"][0]["title"], "Resolved: certs");

    set("UPDATE domains SET cert_not_after = now() + interval '3 days 1 hour' WHERE application_id = $1").await;
    alerts::evaluate(&e, &[]).await.unwrap();
    let got = hook.wait_for(3, Duration::from_secs(30)).await;
    let text = got[2].json()["embeds"][0]["description"].as_str().unwrap().to_owned();
    assert!(text.ends_with("expires in 3 days"), "{text}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    assert_eq!(hook.received().len(), 3);
}

/// An instance administrator's disk rule watches the host's file systems
/// (Berth's data directory's and the Docker engine's data root's): with a
/// threshold any real disk passes, it fires once, naming the fuller one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_alert_names_the_file_system_it_is_about() {
    use engine::alerts::{self, NewRule};
    let t = TestEngine::new().await;
    let e = open(&t.sampling_every_second());
    let (caller, _) = owner_with_environment(&e).await;
    assert!(caller.instance_admin, "the first account administers the instance");
    let hook = Receiver::start(vec![]).await;
    let (channel, _) = add(&e, &caller, form("ops", "webhook", &hook.url, &[])).await;
    let rule = NewRule::parse("disk", "disk", "0.001", "1", &[channel.to_string()]).unwrap();
    alerts::create_rule(&e, &caller, rule).await.unwrap();
    let stop = deliveries(&e);
    let sampler = tokio::spawn(engine::sampling::run(e.clone(), stop.clone()));
    let fired = hook.wait_for(1, Duration::from_secs(60)).await;
    let text = fired[0].json()["text"].as_str().unwrap().to_owned();
    assert!(
        text.starts_with("Disk of this server (Berth's data directory) is ")
            || text.starts_with("Disk of this server (Docker's data root) is "),
        "{text}"
    );
    assert!(text.contains("above 0.0 % for 1 s"), "{text}");
    stop.cancel();
    let _ = sampler.await;
}
