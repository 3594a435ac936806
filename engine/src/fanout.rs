//! One Redis subscription connection per process, shared by every live-log
//! follower in it. Each follower of a channel gets a local broadcast receiver;
//! the channel is subscribed in Redis while at least one follower holds it and
//! unsubscribed when the last one goes. A thousand open log views cost one
//! Redis connection, not a thousand.

use crate::error::StoreError;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// How many messages a slow follower may fall behind before it is told it
/// lagged (it then re-reads what it missed from the log file).
const BACKLOG: usize = 1024;

#[derive(Default)]
struct State {
    sink: Option<redis::aio::PubSubSink>,
    channels: HashMap<String, Channel>,
    /// Bumped on each new connection: a reader task that outlived its
    /// connection must not clear the state of the next one.
    generation: u64,
}

struct Channel {
    tx: broadcast::Sender<String>,
    holders: usize,
}

/// The process's shared subscriber. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    client: redis::Client,
    state: Arc<Mutex<State>>,
    /// Serialises (re)connecting and SUBSCRIBE round trips.
    connect: Arc<tokio::sync::Mutex<()>>,
}

/// A follower's hold on a channel: messages arrive on `rx`; dropping it lets
/// the channel go when no one else follows it.
pub struct Subscription {
    pub rx: broadcast::Receiver<String>,
    hub: Hub,
    channel: String,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut st = self.hub.state.lock().expect("hub state");
        let last = match st.channels.get_mut(&self.channel) {
            Some(c) => {
                c.holders -= 1;
                c.holders == 0
            }
            None => false,
        };
        if last {
            st.channels.remove(&self.channel);
            if let Some(mut sink) = st.sink.clone() {
                let (channel, hub) = (self.channel.clone(), self.hub.clone());
                tokio::spawn(async move {
                    // In turn with subscribes: a follower that came for the same
                    // channel meanwhile keeps it subscribed.
                    let _one = hub.connect.lock().await;
                    let wanted = hub.state.lock().expect("hub state").channels.contains_key(&channel);
                    if !wanted {
                        let _ = sink.unsubscribe(&channel).await;
                    }
                });
            }
        }
    }
}

impl Hub {
    pub fn new(client: redis::Client) -> Self {
        Self {
            client,
            state: Arc::new(Mutex::new(State::default())),
            connect: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Follows `channel` (a full Redis channel name). Returns once Redis has
    /// confirmed the subscription, so nothing published after this is missed.
    pub async fn subscribe(&self, channel: &str) -> Result<Subscription, StoreError> {
        let _one = self.connect.lock().await;
        let (sink, existing) = {
            let mut st = self.state.lock().expect("hub state");
            let existing = st.channels.get_mut(channel).map(|c| {
                c.holders += 1;
                c.tx.subscribe()
            });
            (st.sink.clone(), existing)
        };
        if let Some(rx) = existing {
            return Ok(self.hold(channel, rx));
        }
        let mut sink = match sink {
            Some(s) => s,
            None => self.reconnect().await?,
        };
        let (tx, rx) = broadcast::channel(BACKLOG);
        self.state
            .lock()
            .expect("hub state")
            .channels
            .insert(channel.to_owned(), Channel { tx, holders: 1 });
        if let Err(e) = sink.subscribe(channel).await {
            let mut st = self.state.lock().expect("hub state");
            st.channels.remove(channel);
            st.sink = None;
            return Err(e.into());
        }
        Ok(self.hold(channel, rx))
    }

    fn hold(&self, channel: &str, rx: broadcast::Receiver<String>) -> Subscription {
        Subscription {
            rx,
            hub: self.clone(),
            channel: channel.to_owned(),
        }
    }

    /// Opens the shared connection and starts its reader.
    async fn reconnect(&self) -> Result<redis::aio::PubSubSink, StoreError> {
        let (sink, mut stream) = self.client.get_async_pubsub().await?.split();
        let generation = {
            let mut st = self.state.lock().expect("hub state");
            st.generation += 1;
            st.sink = Some(sink.clone());
            st.generation
        };
        let state = self.state.clone();
        tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                let Ok(payload) = msg.get_payload::<String>() else {
                    continue;
                };
                let st = state.lock().expect("hub state");
                if let Some(c) = st.channels.get(msg.get_channel_name()) {
                    let _ = c.tx.send(payload);
                }
            }
            // The connection is gone: followers see their channel close (and
            // end; a browser reconnects and replays); the next subscribe
            // opens a new connection.
            let mut st = state.lock().expect("hub state");
            if st.generation == generation {
                st.sink = None;
                st.channels.clear();
            }
        });
        Ok(sink)
    }

    /// Channels followed right now, and Redis connections held (0 or 1).
    pub fn stats(&self) -> (usize, usize) {
        let st = self.state.lock().expect("hub state");
        (st.channels.len(), usize::from(st.sink.is_some()))
    }
}
