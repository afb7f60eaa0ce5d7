//! Users' public details where media needs them itself (gRPC answers): cache-aside in the
//! cache port (`media:user:{id}`, the protobuf `Owner`), misses fetched from accounts in one
//! `GetUsers` call per lookup. `user.updated` and `user.deleted` invalidate the entry, and
//! an answer that was on its way while that happened is not cached (the cache's fill refuses
//! it), so a rename never hides behind a stale copy. Accounts being down never fails a
//! caller: it gets what the cache had.

use accounts::accounts_service_client::AccountsServiceClient;
use flick_kit::Caller;
use flick_kit::telemetry::{TracedChannel, traced};
use flick_platform::cache::{Cache, CacheError, FillToken, Lookup};
use flick_proto::accounts::v1 as accounts;
use flick_proto::media::v1::Owner;
use prost::Message;
use std::collections::HashMap;
use std::time::Duration;
use tonic::transport::Endpoint;

/// How long a user's details stay cached without an event dropping them.
const TTL: Duration = Duration::from_secs(600);
/// Accounts' `GetUsers` limit.
const BATCH: usize = 100;

fn key(id: &str) -> String {
    format!("media:user:{id}")
}

fn count(result: &'static str, n: usize) {
    if n > 0 {
        metrics::counter!("media_user_directory_total", "result" => result).increment(n as u64);
    }
}

#[derive(Clone)]
pub struct UserDirectory {
    cache: Cache,
    /// Accounts (`endpoints.accounts`); without it only cached users are known.
    accounts: Option<AccountsServiceClient<TracedChannel>>,
}

impl UserDirectory {
    /// A directory that knows only what `cache` holds.
    pub fn new(cache: Cache) -> Self {
        Self { cache, accounts: None }
    }

    /// Asks accounts at `url` for users the cache lacks (connected on first use: accounts may
    /// start after media).
    pub fn with_accounts(mut self, url: &str) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(url.to_string())?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(3));
        self.accounts = Some(AccountsServiceClient::new(traced(endpoint.connect_lazy())));
        Ok(self)
    }

    /// Public details of `ids` (duplicates are fine). Unknown users are absent, and so is
    /// everyone not cached while accounts cannot be reached.
    pub async fn get_many(&self, ids: &[String]) -> HashMap<String, Owner> {
        let mut wanted: Vec<&String> = ids.iter().filter(|id| !id.is_empty()).collect();
        wanted.sort();
        wanted.dedup();
        let cached =
            futures::future::join_all(wanted.iter().map(|id| async move { self.cache.lookup(&key(id)).await })).await;
        let mut found = HashMap::new();
        let mut misses = Vec::new();
        // How to store each miss: a fill from what it saw, or (`None`) overwriting an entry
        // this build cannot decode. Users the cache could not be asked about are not stored.
        let mut seen: HashMap<String, Option<FillToken>> = HashMap::new();
        for (id, entry) in wanted.into_iter().zip(cached) {
            match entry {
                Ok(Lookup::Hit(bytes)) => match Owner::decode(bytes.as_slice()) {
                    Ok(owner) => {
                        found.insert(id.clone(), owner);
                    }
                    Err(_) => {
                        seen.insert(id.clone(), None);
                        misses.push(id.clone());
                    }
                },
                Ok(Lookup::Miss(token)) => {
                    seen.insert(id.clone(), Some(token));
                    misses.push(id.clone());
                }
                Err(e) => {
                    tracing::debug!(user.id = %id, error = %e, "cache unavailable: user asked of accounts");
                    misses.push(id.clone());
                }
            }
        }
        count("hit", found.len());
        if misses.is_empty() {
            return found;
        }
        let Some(client) = &self.accounts else {
            count("unavailable", misses.len());
            return found;
        };
        for chunk in misses.chunks(BATCH) {
            let mut request = tonic::Request::new(accounts::GetUsersRequest { ids: chunk.to_vec() });
            Caller::anonymous().to_grpc(&mut request);
            match client.clone().get_users(request).await {
                Ok(response) => {
                    count("miss", chunk.len());
                    let owners: Vec<Owner> = response
                        .into_inner()
                        .users
                        .into_iter()
                        .map(|u| Owner {
                            id: u.id,
                            username: u.username,
                            display_name: u.display_name,
                            avatar_url: u.avatar_url.unwrap_or_default(),
                        })
                        .collect();
                    let stored = futures::future::join_all(owners.iter().filter_map(|o| {
                        let how = seen.get(&o.id)?;
                        Some(async move {
                            let (key, value) = (key(&o.id), o.encode_to_vec());
                            match how {
                                Some(token) => self.cache.fill(&key, token, &value, TTL).await.map(drop),
                                None => self.cache.set(&key, &value, TTL).await,
                            }
                        })
                    }))
                    .await;
                    found.extend(owners.into_iter().map(|o| (o.id.clone(), o)));
                    if let Some(Err(e)) = stored.into_iter().find(Result::is_err) {
                        tracing::debug!(error = %e, "users not cached");
                    }
                }
                Err(status) => {
                    count("unavailable", chunk.len());
                    tracing::warn!(
                        users = chunk.len(),
                        code = ?status.code(),
                        error = %status.message(),
                        "accounts did not answer GetUsers: owners left out"
                    );
                }
            }
        }
        found
    }

    /// Drops `id`'s cached details here, in the shared cache and on every replica.
    pub async fn invalidate(&self, id: &str) -> Result<(), CacheError> {
        self.cache.invalidate(&key(id)).await
    }
}
