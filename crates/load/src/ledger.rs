//! Acknowledged writes. A write the platform acknowledged must survive whatever failed around
//! it; a write whose answer was lost (a broken connection, a 5xx) may or may not have happened,
//! so its pair becomes unknown and is left out of the checks until a later write settles it.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Default)]
pub struct Ledger {
    /// (user, video) -> liked, as last acknowledged; None: the last answer was lost.
    pub likes: BTreeMap<(String, String), Option<bool>>,
    /// (subscriber, channel) -> subscribed, as likes.
    pub subscriptions: BTreeMap<(String, String), Option<bool>>,
    /// Acknowledged comments: (video, comment id).
    pub comments: Vec<(String, String)>,
    /// Completed uploads: (owner's token, video id).
    pub uploads: Vec<(String, String)>,
}

impl Ledger {
    pub fn like(&mut self, user: &str, video: &str, state: Option<bool>) {
        self.likes.insert((user.to_owned(), video.to_owned()), state);
    }

    pub fn believed_like(&self, user: &str, video: &str) -> bool {
        self.likes.get(&(user.to_owned(), video.to_owned())).copied().flatten().unwrap_or(false)
    }

    pub fn subscribe(&mut self, user: &str, channel: &str, state: Option<bool>) {
        self.subscriptions.insert((user.to_owned(), channel.to_owned()), state);
    }

    pub fn believed_subscribed(&self, user: &str, channel: &str) -> bool {
        self.subscriptions.get(&(user.to_owned(), channel.to_owned())).copied().flatten().unwrap_or(false)
    }

    /// Videos whose like or comment counts the run changed.
    pub fn touched_videos(&self) -> BTreeSet<String> {
        let liked = self.likes.keys().map(|(_, video)| video.clone());
        let commented = self.comments.iter().map(|(video, _)| video.clone());
        liked.chain(commented).collect()
    }

    pub fn touched_channels(&self) -> BTreeSet<String> {
        self.subscriptions.keys().map(|(_, channel)| channel.clone()).collect()
    }
}
